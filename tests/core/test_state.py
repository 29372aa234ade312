"""The export state file: what the export writes is what the gateway and the next export read back."""

from core.state import STATE_FILE, ModelState, read_state, write_state


def test_a_written_state_reads_back_equal(tmp_path):
    state = ModelState("abc", {"int8": {"triton_name": "m_int8", "reason": "fails the gate"}}, {"m": ["Hardmax"]},
                       {"scores": {"samples": 4, "shares": {"cat": 0.5, "dog": 0.5}}}, {"latency_us": {"m": {}}})

    write_state(state, tmp_path / "m")

    assert read_state(tmp_path / "m") == state


def test_a_missing_or_unreadable_state_is_an_empty_one_so_the_model_is_rebuilt(tmp_path):
    assert read_state(tmp_path / "never-exported") == ModelState()
    (tmp_path / STATE_FILE).write_text("{not json")
    assert read_state(tmp_path).fingerprint is None
    (tmp_path / STATE_FILE).write_text('{"fingerprint": "abc", "written_by_a_newer_export": 1}')
    assert read_state(tmp_path) == ModelState("abc")
