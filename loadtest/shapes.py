"""Load shapes chosen with `--shape` and tuned from the command line: constant (plain -u/-r/-t), step ramp, spike, soak.

Locust runs the first LoadTestShape a locustfile defines, so the locustfile holds one, `OptionShape`, which asks
`plan_from_options` for the plan. The plans are plain frozen dataclasses: `at(seconds)` gives (users, spawn_rate) or
None to stop. This module does not import locust: importing locust monkey-patches the process (gevent).
"""

from __future__ import annotations

from dataclasses import dataclass

Tick = tuple[int, float] | None
SHAPES = ("constant", "step", "spike", "soak")


@dataclass(frozen=True)
class Constant:
    """-u users spawned at -r per second; ends after -t seconds, or runs until stopped when there is no -t.
    (With a shape class Locust waits for the shape to end before it arms its own -t timer, so the shape ends it.)"""

    users: int
    spawn_rate: float
    duration_s: float | None = None

    def at(self, seconds: float) -> Tick:
        if self.duration_s is not None and seconds >= self.duration_s:
            return None
        return self.users, self.spawn_rate


@dataclass(frozen=True)
class StepRamp:
    """Start at step_users, add step_users every step_seconds up to max_users, hold, stop after duration_s."""

    step_users: int
    step_seconds: float
    max_users: int
    duration_s: float

    def __post_init__(self) -> None:
        if self.step_users < 1 or self.step_seconds <= 0 or self.max_users < self.step_users:
            raise ValueError(
                f"step shape needs --step-users >= 1, --step-seconds > 0 and -u >= --step-users; got "
                f"step_users={self.step_users}, step_seconds={self.step_seconds}, max_users={self.max_users}"
            )

    def at(self, seconds: float) -> Tick:
        if seconds >= self.duration_s:
            return None
        steps = int(seconds // self.step_seconds) + 1
        # spawn a whole step within a second so each plateau is measured at its full user count
        return min(self.max_users, steps * self.step_users), float(self.step_users)


@dataclass(frozen=True)
class Spike:
    """base_users, then spike_users for spike_seconds starting at spike_at_s, then back to base, until duration."""

    base_users: int
    spike_users: int
    spike_at_s: float
    spike_seconds: float
    duration_s: float

    def __post_init__(self) -> None:
        if self.spike_users <= self.base_users:
            raise ValueError(
                f"spike shape needs --spike-users > -u (base users); got spike_users={self.spike_users}, "
                f"base_users={self.base_users}"
            )

    def at(self, seconds: float) -> Tick:
        if seconds >= self.duration_s:
            return None
        if self.spike_at_s <= seconds < self.spike_at_s + self.spike_seconds:
            # a spike arrives at once: spawn every extra user within the first second
            return self.spike_users, float(self.spike_users)
        return self.base_users, float(self.spike_users)


@dataclass(frozen=True)
class Soak:
    """Ramp to users over ramp_s, then hold for a long time: leaks and slow drifts show here."""

    users: int
    ramp_s: float
    duration_s: float

    def at(self, seconds: float) -> Tick:
        if seconds >= self.duration_s:
            return None
        return self.users, max(1.0, self.users / self.ramp_s) if self.ramp_s > 0 else float(self.users)


def plan_from_options(options) -> Constant | StepRamp | Spike | Soak:
    users = options.num_users or 1
    spawn_rate = options.spawn_rate or users
    duration = options.shape_duration
    if options.shape == "constant":
        return Constant(users, spawn_rate, duration or options.run_time or None)
    if options.shape == "step":
        return StepRamp(options.step_users, options.step_seconds, users, duration or 300)
    if options.shape == "spike":
        return Spike(users, options.spike_users, options.spike_at, options.spike_seconds, duration or 120)
    if options.shape == "soak":
        return Soak(users, options.soak_ramp, duration or 3600)
    raise ValueError(f"--shape must be one of {', '.join(SHAPES)}, got {options.shape!r}")


def add_arguments(parser) -> None:
    group = parser.add_argument_group("modelport load shapes (-u is the step maximum, spike base, soak level)")
    group.add_argument("--shape", choices=SHAPES, default="constant", help="load shape; default: plain -u/-r/-t")
    group.add_argument("--shape-duration", type=float, default=None, help="seconds the shape runs (step 300, spike 120, soak 3600)")
    group.add_argument("--step-users", type=int, default=4, help="users added per step")
    group.add_argument("--step-seconds", type=float, default=30.0, help="seconds per step")
    group.add_argument("--spike-users", type=int, default=64, help="users during the spike")
    group.add_argument("--spike-at", type=float, default=30.0, help="seconds into the run the spike starts")
    group.add_argument("--spike-seconds", type=float, default=20.0, help="how long the spike lasts")
    group.add_argument("--soak-ramp", type=float, default=60.0, help="seconds to reach -u users in a soak")
