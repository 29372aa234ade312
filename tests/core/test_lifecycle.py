"""core/lifecycle.py: the labels state file, the actions' rules, and the version policy it writes."""

import threading

import pytest

from core import lifecycle, repository
from core.lifecycle import Lifecycle, LifecycleError


def model_dir(tmp_path, versions=(1, 2)):
    d = tmp_path / "m"
    for v in versions:
        (d / str(v)).mkdir(parents=True)
    config = repository.parse('name: "m"\nbackend: "python"\nmax_batch_size: 4\n')
    config.version_policy.latest.num_versions = 1
    (d / "config.pbtxt").write_text(repository.render(config))
    return d


def test_without_a_file_the_newest_version_is_stable(tmp_path):
    d = model_dir(tmp_path, (1, 3))
    assert lifecycle.read_lifecycle(d) is None
    assert lifecycle.current(d) == Lifecycle(stable=3)
    assert lifecycle.current(tmp_path / "none") is None


def test_start_promote_rollback_move_the_labels_and_the_served_versions(tmp_path):
    d = model_dir(tmp_path)
    lifecycle.write_lifecycle(Lifecycle(stable=1), d)
    assert lifecycle.apply_version_policy(d)  # stable 1 while 2 is newest: Triton must be told which
    assert list(repository.parse((d / "config.pbtxt").read_text()).version_policy.specific.versions) == [1]

    lc = lifecycle.update(d, lambda lc: lifecycle.start(lc, 2, (1, 2), percent=20, sticky="x-user"))
    assert (lc.stable, lc.canary, lc.percent, lc.sticky, lc.served) == (1, 2, 20.0, "x-user", (1, 2))
    assert list(repository.parse((d / "config.pbtxt").read_text()).version_policy.specific.versions) == [1, 2]
    assert lifecycle.read_lifecycle(d) == lc

    lc = lifecycle.update(d, lifecycle.promote)
    assert (lc.stable, lc.canary) == (2, None)
    policy = repository.parse((d / "config.pbtxt").read_text()).version_policy
    assert policy.WhichOneof("policy_choice") == "latest" and policy.latest.num_versions == 1

    lc = lifecycle.update(d, lambda lc: lifecycle.rollback(lc, reason="p99"))
    assert lc.stable == 1 and [h["action"] for h in lc.history] == ["start", "promote", "rollback"]
    assert lc.history[-1]["reason"] == "p99" and lc.history[-1]["to"] == 1


@pytest.mark.parametrize("action, message", [
    (lambda lc: lifecycle.start(lc, 5, (1, 2)), "not on disk"),
    (lambda lc: lifecycle.start(lc, 1, (1, 2)), "already stable"),
    (lambda lc: lifecycle.start(lc, 2, (1, 2), percent=0), "--percent"),
    (lambda lc: lifecycle.start(lc, 2, (1, 2), mode="blue"), "mode"),
    (lifecycle.promote, "no canary to promote"),
    (lifecycle.rollback, "nothing to roll back"),
])
def test_actions_that_do_not_apply_say_why(action, message):
    with pytest.raises(LifecycleError, match=message):
        action(Lifecycle(stable=1))


def test_a_second_canary_is_refused_until_the_first_is_decided():
    lc = lifecycle.start(Lifecycle(stable=1), 2, (1, 2, 3))
    with pytest.raises(LifecycleError, match="already the canary"):
        lifecycle.start(lc, 3, (1, 2, 3))
    with pytest.raises(LifecycleError, match="promote or roll it back"):
        lifecycle.promote(lc, version=3, on_disk=(1, 2, 3))


def test_an_unreadable_file_names_itself_and_the_fix(tmp_path):
    d = model_dir(tmp_path)
    (d / lifecycle.LIFECYCLE_FILE).write_text("{not json")
    with pytest.raises(LifecycleError, match="delete it"):
        lifecycle.read_lifecycle(d)


def test_concurrent_updates_lose_no_action(tmp_path):
    d = model_dir(tmp_path)
    lifecycle.write_lifecycle(Lifecycle(stable=1), d)

    def toggle():
        for _ in range(20):
            lifecycle.update(d, lambda lc: lifecycle.rollback(lifecycle.start(lc, 2, (1, 2)))
                             if lc.canary is None else lifecycle.rollback(lc))

    threads = [threading.Thread(target=toggle) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(lifecycle.read_lifecycle(d).history) == 4 * 20 * 2
