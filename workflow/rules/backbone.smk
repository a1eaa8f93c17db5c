# Rules of the 'backbone' stage. Each rule is one step of the table in src/peftlab/pipeline/steps.py: its
# inputs, outputs, config values (params), command and resources come from there via PLAN (common.smk).


# The mini study's backbone, pretrained on the upstream set (only without backbone.weights).
rule pretrain:
    input:
        PLAN.input("pretrain"),
    output:
        PLAN.output("pretrain"),
    log:
        PLAN.log("pretrain"),
    benchmark:
        PLAN.benchmark("pretrain")
    wildcard_constraints:
        **PLAN.wildcard_constraints("pretrain"),
    conda:
        PEFTLAB_ENV
    threads: PLAN.threads("pretrain")
    resources:
        **PLAN.resources("pretrain"),
    params:
        config=PLAN.config_values("pretrain"),
        cmd=PLAN.command("pretrain"),
    shell:
        "{params.cmd} > {log} 2>&1"


# What the backbone's frozen features know about the study's tasks (models/<backbone>/probe.json), against the
# same architecture at random init and raw pixels; the report reads it for the lessons' preconditions.
rule probe:
    input:
        PLAN.input("probe"),
    output:
        PLAN.output("probe"),
    log:
        PLAN.log("probe"),
    benchmark:
        PLAN.benchmark("probe")
    wildcard_constraints:
        **PLAN.wildcard_constraints("probe"),
    conda:
        PEFTLAB_ENV
    threads: PLAN.threads("probe")
    resources:
        **PLAN.resources("probe"),
    params:
        config=PLAN.config_values("probe"),
        cmd=PLAN.command("probe"),
    shell:
        "{params.cmd} > {log} 2>&1"
