# peftlab: the study as a Snakemake workflow. The config is params.yaml unless --configfile names another
# (config/paper.yaml, config/tiny.yaml); it is validated before the DAG is built. Every rule is a row of the step
# table in src/peftlab/pipeline/steps.py, from which dvc.yaml is generated too (`peftlab pipeline dvc-yaml`).
# After a successful run the outputs are recorded in dvc.lock with one `dvc commit` (DVC repos only; never from
# rules: DVC holds a repository lock).
if not workflow.overwrite_configfiles:

    configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/backbone.smk"
include: "workflow/rules/search.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analyses.smk"
include: "workflow/rules/report.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        PLAN.targets(),


onsuccess:
    print(PLAN.after_success(workflow))
