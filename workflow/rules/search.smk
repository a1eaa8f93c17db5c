# Rules of the 'search' stage. Each rule is one step of the table in src/peftlab/pipeline/steps.py: its
# inputs, outputs, config values (params), command and resources come from there via PLAN (common.smk).


# Hyper-parameter search of one (task, method): every grid point train800 → val200; best.json.
rule search:
    input:
        PLAN.input("search"),
    output:
        PLAN.output("search"),
    log:
        PLAN.log("search"),
    benchmark:
        PLAN.benchmark("search")
    wildcard_constraints:
        **PLAN.wildcard_constraints("search"),
    conda:
        PEFTLAB_ENV
    threads: PLAN.threads("search")
    resources:
        **PLAN.resources("search"),
    params:
        config=PLAN.config_values("search"),
        cmd=PLAN.command("search"),
    shell:
        "{params.cmd} > {log} 2>&1"
