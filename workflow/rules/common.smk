# Validation and helpers shared by every rule. The study config is checked (schema, methods, grids, data root,
# local files) before Snakemake builds the DAG, so a wrong config fails with one line naming the key before any
# job starts. Rules get everything from the step table (src/peftlab/pipeline/steps.py) through PLAN.
import sys

from peftlab.errors import PeftlabError
from peftlab.pipeline.rules import RulePlan

try:
    PLAN = RulePlan.load(
        config,
        workflow.configfiles,
        workflow.config_settings.config,
        directory,
    )
except PeftlabError as error:
    print(f"peftlab: error: {error}", file=sys.stderr)
    raise SystemExit(2)

# The software of every rule: the peftlab package with its pinned dependencies. Without
# --software-deployment-method conda, rules run in the environment that runs Snakemake (make install).
PEFTLAB_ENV = "../envs/peftlab.yaml"
