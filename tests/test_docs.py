"""The README's state diagram is the one drawn from the transition table."""

from pathlib import Path

from auzap_actors.core.state import state_diagram


def test_readme_diagram_matches_the_table() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert f"```mermaid\n{state_diagram()}\n```" in readme
