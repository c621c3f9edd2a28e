"""events/ holds a sample for every function, and every sample belongs to a function."""

from __future__ import annotations

from cfnlint.decode import decode

from tests.events import EVENTS, ROOT


def _template_functions() -> dict[str, str]:
    template, matches = decode(str(ROOT / "template.yaml"))
    assert not matches
    return {
        res["Properties"]["CodeUri"].strip("/").split("/")[-1]: lid
        for lid, res in template["Resources"].items()
        if res["Type"] == "AWS::Serverless::Function"
    }


def test_every_function_has_sample_events_and_every_event_folder_a_function():
    functions = _template_functions()
    folders = {p.name for p in EVENTS.iterdir() if p.is_dir()}
    assert folders == set(functions), "events/<name>/ must match the template's functions/<name>/"
    for name in folders:
        assert list((EVENTS / name).glob("*.json")), f"events/{name}/ has no sample event"
        assert (ROOT / "functions" / name / "app.py").is_file()
