# Rules of the 'data' stage. Each rule is one step of the table in src/peftlab/pipeline/steps.py: its
# inputs, outputs, config values (params), command and resources come from there via PLAN (common.smk).


# The offline mini-suite, one task per job (default study only).
rule generate:
    input:
        PLAN.input("generate"),
    output:
        PLAN.output("generate"),
    log:
        PLAN.log("generate"),
    wildcard_constraints:
        **PLAN.wildcard_constraints("generate"),
    conda:
        PEFTLAB_ENV
    threads: PLAN.threads("generate")
    resources:
        **PLAN.resources("generate"),
    params:
        config=PLAN.config_values("generate"),
        cmd=PLAN.command("generate"),
    shell:
        "{params.cmd} > {log} 2>&1"


# Lists + images of one task → uint8 shards and manifest.json.
rule prepare:
    input:
        PLAN.input("prepare"),
    output:
        PLAN.output("prepare"),
    log:
        PLAN.log("prepare"),
    wildcard_constraints:
        **PLAN.wildcard_constraints("prepare"),
    conda:
        PEFTLAB_ENV
    threads: PLAN.threads("prepare")
    resources:
        **PLAN.resources("prepare"),
    params:
        config=PLAN.config_values("prepare"),
        cmd=PLAN.command("prepare"),
    shell:
        "{params.cmd} > {log} 2>&1"
