# Rules of the 'report' stage. Each rule is one step of the table in src/peftlab/pipeline/steps.py: its
# inputs, outputs, config values (params), command and resources come from there via PLAN (common.smk).


# The study report: index.md/.html, figures, tables, headline metrics.
rule report:
    input:
        PLAN.input("report"),
    output:
        PLAN.output("report"),
    log:
        PLAN.log("report"),
    wildcard_constraints:
        **PLAN.wildcard_constraints("report"),
    conda:
        PEFTLAB_ENV
    threads: PLAN.threads("report")
    resources:
        **PLAN.resources("report"),
    params:
        config=PLAN.config_values("report"),
        cmd=PLAN.command("report"),
    shell:
        "{params.cmd} > {log} 2>&1"
