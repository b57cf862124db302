"""The API's view of the workflows (orchestrator.client.catalog) matches their definitions."""

from orchestrator.client.canonical import Workflow
from orchestrator.client.catalog import IDENTITY_FIELDS, SLA_S, WORKFLOW_INPUTS
from orchestrator.flows import WORKFLOWS


def test_every_defined_workflow_has_its_input_model_and_identity_in_the_catalog() -> None:
    for name, spec in WORKFLOWS.items():
        workflow = Workflow(name)
        assert WORKFLOW_INPUTS[workflow] is spec.input_model, name
        assert IDENTITY_FIELDS[workflow], name
        assert spec.sla_s == SLA_S[workflow], name
