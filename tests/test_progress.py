"""Progress: plain periodic lines when the stream is not a terminal, a rich bar when it is, nothing when off."""

from __future__ import annotations

import io

import pytest

from edgedistill.progress import LineTracker, duration, progress


def test_plain_lines_appear_every_ten_percent_before_the_end() -> None:
    stream = io.StringIO()
    seen_before_end = []
    with progress("train", 300, unit="step", stream=stream) as bar:
        for step in range(1, 301):
            bar.update(completed=step, info=f"ce={1 / step:.3f}")
            if step == 150:
                seen_before_end = stream.getvalue().splitlines()
    assert len(seen_before_end) == 5  # 10%, 20%, ... 50%: written while the loop still runs
    assert seen_before_end[0].startswith("train: step 30/300 (10%), ") and "elapsed, ~" in seen_before_end[0]
    assert seen_before_end[0].endswith("  ce=0.033")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("train: step 300/300 (100%), ") and "left" not in lines[-1]
    assert "\x1b[" not in stream.getvalue()  # no terminal control codes in a log file


def test_plain_lines_every_20_seconds_and_a_last_line_when_stopped_early() -> None:
    now = [0.0]
    stream = io.StringIO()
    bar = LineTracker("search (evolutionary)", 1000, 0, unit="config", stream=stream, clock=lambda: now[0])
    for _ in range(5):
        now[0] += 15.0
        bar.advance()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "search (evolutionary): config 2/1000 (0%), 30 s elapsed, ~4.2 h left",
        "search (evolutionary): config 4/1000 (0%), 60 s elapsed, ~4.2 h left",
    ]
    bar.update(description="(stale)")
    bar._close()
    assert stream.getvalue().splitlines()[-1] == "search (evolutionary) (stale): config 5/1000 (0%), 75 s elapsed"


def test_resumed_progress_estimates_from_this_session() -> None:
    now = [0.0]
    bar = LineTracker("train", 100, 50, unit="step", stream=io.StringIO(), clock=lambda: now[0])
    now[0] = 10.0
    bar.update(completed=60)
    assert bar.line() == "train: step 60/100 (60%), 10 s elapsed, ~40 s left"


def test_quiet_and_terminal_progress() -> None:
    quiet = io.StringIO()
    with progress("teachers", 10, show=False, stream=quiet) as bar:
        bar.advance(10)
    assert quiet.getvalue() == "" and bar.completed == 10

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    term = Terminal()
    with progress("profile", 4, unit="block", stream=term) as bar:
        bar.advance(4)
    assert "profile" in term.getvalue() and "4/4" in term.getvalue()  # drawn by rich, not as plain lines


def test_duration() -> None:
    assert (duration(35.2), duration(252), duration(5400 * 1.0), duration(9000)) == (
        "35 s",
        "4.2 min",
        "90.0 min",
        "2.5 h",
    )


def test_search_strategies_print_plain_progress_in_a_log(capsys: pytest.CaptureFixture[str]) -> None:
    from edgedistill.search.strategies import SEARCH_STRATEGIES, Problem, SearchSettings

    seen_during = []

    def score(config: tuple[float, ...]) -> float:
        if len(problem.scores) == 20:
            seen_during.extend(capsys.readouterr().out.splitlines())
        return sum(config)

    problem = Problem([[0.25, 0.5, 0.75, 1.0]] * 3, lambda c: True, score, show_progress=True)
    SEARCH_STRATEGIES.get("exhaustive")(problem, SearchSettings())
    assert seen_during[0].startswith("search (exhaustive): config 7/64 (11%), ")  # written before the search ended
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("search (exhaustive): config 64/64 (100%), ")
