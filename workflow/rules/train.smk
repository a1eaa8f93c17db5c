# Rules of the 'train' stage. Each rule is one step of the table in src/peftlab/pipeline/steps.py: its
# inputs, outputs, config values (params), command and resources come from there via PLAN (common.smk).


# Final runs of the selected point on train800val200, all seeds → test (and shift) logits.
rule train:
    input:
        PLAN.input("train"),
    output:
        PLAN.output("train"),
    log:
        PLAN.log("train"),
    benchmark:
        PLAN.benchmark("train")
    wildcard_constraints:
        **PLAN.wildcard_constraints("train"),
    conda:
        PEFTLAB_ENV
    threads: PLAN.threads("train")
    resources:
        **PLAN.resources("train"),
    params:
        config=PLAN.config_values("train"),
        cmd=PLAN.command("train"),
    shell:
        "{params.cmd} > {log} 2>&1"


# Many-shot runs of one (task, size, method): the selected point on manyshot-<size>.
rule manyshot:
    input:
        PLAN.input("manyshot"),
    output:
        PLAN.output("manyshot"),
    log:
        PLAN.log("manyshot"),
    benchmark:
        PLAN.benchmark("manyshot")
    wildcard_constraints:
        **PLAN.wildcard_constraints("manyshot"),
    conda:
        PEFTLAB_ENV
    threads: PLAN.threads("manyshot")
    resources:
        **PLAN.resources("manyshot"),
    params:
        config=PLAN.config_values("manyshot"),
        cmd=PLAN.command("manyshot"),
    shell:
        "{params.cmd} > {log} 2>&1"
