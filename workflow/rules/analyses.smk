# Rules of the 'analyses' stage. Each rule is one step of the table in src/peftlab/pipeline/steps.py: its
# inputs, outputs, config values (params), command and resources come from there via PLAN (common.smk).


# WiSE-FT of one (task, method): target and shift accuracy along α.
rule robustness:
    input:
        PLAN.input("robustness"),
    output:
        PLAN.output("robustness"),
    log:
        PLAN.log("robustness"),
    benchmark:
        PLAN.benchmark("robustness")
    wildcard_constraints:
        **PLAN.wildcard_constraints("robustness"),
    conda:
        PEFTLAB_ENV
    threads: PLAN.threads("robustness")
    resources:
        **PLAN.resources("robustness"),
    params:
        config=PLAN.config_values("robustness"),
        cmd=PLAN.command("robustness"),
    shell:
        "{params.cmd} > {log} 2>&1"


# Agreement, error overlap and ensembles of all methods on one task.
rule ensembles:
    input:
        PLAN.input("ensembles"),
    output:
        PLAN.output("ensembles"),
    log:
        PLAN.log("ensembles"),
    wildcard_constraints:
        **PLAN.wildcard_constraints("ensembles"),
    conda:
        PEFTLAB_ENV
    threads: PLAN.threads("ensembles")
    resources:
        **PLAN.resources("ensembles"),
    params:
        config=PLAN.config_values("ensembles"),
        cmd=PLAN.command("ensembles"),
    shell:
        "{params.cmd} > {log} 2>&1"
