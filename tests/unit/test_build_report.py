"""What `sorctl images build` reports, without Docker: the docker SDK's JSON stream read as
steps (as the legacy builder sends it: step lines and their newline in separate chunks, stderr
in colour, a stage's image in an `aux` chunk), the build log file, and the summary table."""

from __future__ import annotations

from rich.console import Console

from sorctl.cli.build_view import BuildProgress, step_text, summary_table
from sorctl.engine.buildlog import KEEP_LOGS, BuildLog, Built, Step, StepParser

# Captured from client.api.build(decode=True) of a two-stage Dockerfile whose last RUN fails.
FAILING = [
    {"stream": "Step 1/5 : FROM sorctl-base:bookworm AS one"},
    {"stream": "\n"},
    {"stream": " ---> 0d7755029695\n"},
    {"stream": "Step 2/5 : RUN echo first line; echo second line"},
    {"stream": "\n"},
    {"stream": " ---> Running in e1eb55645ff6\n"},
    {"stream": "first line\nsecond line\n"},
    {"stream": "Removing intermediate container e1eb55645ff6\n"},
    {"stream": " ---> 38585f588434\n"},
    {"aux": {"ID": "sha256:38585f588434fc37232482ae2fa540613a8f15954cd957d75e3ef5f2acfa4536"}},
    {"stream": "Step 3/5 : FROM one AS two"},
    {"stream": "\n"},
    {"stream": " ---> 38585f588434\n"},
    {"stream": "Step 4/5 : RUN echo out; echo err >&2; exit 3"},
    {"stream": "\n"},
    {"stream": " ---> Running in eb0836dc6e02\n"},
    {"stream": "out\n"},
    {"stream": "\u001b[91merr\n\u001b[0m"},
    {"stream": "Removing intermediate container eb0836dc6e02\n"},
    {
        "errorDetail": {"code": 3, "message": "The command ... returned a non-zero code: 3"},
        "error": "The command ... returned a non-zero code: 3",
    },
]

# A build that succeeds, its first steps served from the cache.
CACHED = [
    {"stream": "Step 1/3 : FROM base AS os"},
    {"stream": "\n"},
    {"stream": " ---> fe7a232400e7\n"},
    {"stream": "Step 2/3 : COPY scripts/ /"},
    {"stream": "\n"},
    {"stream": " ---> Using cache\n"},
    {"stream": " ---> 4065c39df25a\n"},
    {"stream": "Step 3/3 : LABEL org.sorctl.version=1.0"},
    {"stream": "\n"},
    {"stream": " ---> Running in 01c6455be8a6\n"},
    {"stream": "Removing intermediate container 01c6455be8a6\n"},
    {"stream": " ---> 8b4bebb0ce30\n"},
    {"aux": {"ID": "sha256:8b4bebb0ce30aaaa"}},
    {"stream": "Successfully built 8b4bebb0ce30\n"},
    {"stream": "Successfully tagged sorctl-router:1.0\n"},
]


def feed_all(parser: StepParser, chunks: list[dict]) -> list[str]:
    lines = [line for chunk in chunks for line in parser.feed(chunk)]
    return lines + parser.finish()


def test_steps_their_output_and_each_stage_image_are_read_from_the_stream():
    heard: list[Step] = []
    parser = StepParser(heard.append)
    lines = feed_all(parser, FAILING)
    assert [(s.number, s.total, s.stage) for s in heard] == [
        (1, 5, "one"), (2, 5, "one"), (3, 5, "two"), (4, 5, "two"),
    ]  # fmt: skip
    assert heard[1].output == ["first line", "second line"]
    assert heard[1].image == "38585f588434" and not heard[1].cached
    assert heard[3].output == ["out", "err"]  # stderr's colour codes dropped
    assert parser.stages == {"one": "38585f588434"}
    assert parser.image is None  # the target was never built
    # every line goes to the log, the error last
    assert "Step 4/5 : RUN echo out; echo err >&2; exit 3" in lines
    assert lines[-1] == "ERROR: The command ... returned a non-zero code: 3"


def test_a_failure_names_the_failing_step_and_its_last_lines():
    parser = StepParser()
    feed_all(parser, FAILING)
    where, tail = parser.failure()
    assert where == "step 4/5 (RUN echo out; echo err >&2; exit 3)"
    assert tail == ["out", "err"]
    assert parser.error == "The command ... returned a non-zero code: 3"


def test_cached_steps_and_the_built_image():
    parser = StepParser()
    lines = feed_all(parser, CACHED)
    assert [s.cached for s in parser.steps] == [False, True, False]
    assert parser.image == "8b4bebb0ce30"
    assert parser.stages == {"os": "8b4bebb0ce30"}
    assert all(s.output == [] for s in parser.steps)  # builder chatter is not step output
    assert "Successfully tagged sorctl-router:1.0" in lines


def test_a_line_split_across_chunks_is_one_line():
    parser = StepParser()
    assert parser.feed({"stream": "Step 1/1 : RUN x"}) == []
    assert parser.feed({"stream": "\n ---> Running in ab\nhal"}) == [
        "Step 1/1 : RUN x",
        " ---> Running in ab",
    ]
    assert parser.feed({"stream": "f a line\r\n"}) == ["half a line"]
    assert parser.current is not None and parser.current.output == ["half a line"]


def test_the_build_log_keeps_every_line_with_its_time_and_prunes_old_logs(tmp_path):
    for n in range(KEEP_LOGS + 3):
        (tmp_path / f"build-0.9-old{n:02d}.log").write_text("old\n")
    log = BuildLog("1.0", folder=tmp_path)
    log.write("build log: here")
    log.write("  node: Step 1/2 : FROM base AS os")
    log.close()
    text = log.path.read_text().splitlines()
    assert log.path.name.startswith("build-1.0-") and log.path.parent == tmp_path
    assert [line.split(None, 1)[1] for line in text] == [
        "build log: here",
        "node: Step 1/2 : FROM base AS os",
    ]
    assert all(float(line.split()[0]) >= 0 for line in text)
    assert len(list(tmp_path.glob("build-*.log"))) == KEEP_LOGS


def render(renderable) -> str:
    console = Console(record=True, width=120)
    console.print(renderable)
    return console.export_text()


def test_the_summary_table_has_a_row_per_role():
    text = render(
        summary_table(
            [
                Built("router", "sorctl-router:1.0", "unchanged", 0.2, 117.4),
                Built("node", "sorctl-node:1.0", "built", 41.25, 396.0),
            ]
        )
    )
    header, *rows = [line for line in text.splitlines() if "│" in line or "┃" in line]
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == [
        "role", "image", "result", "size MB", "seconds",
    ]  # fmt: skip
    cells = [[c.strip() for c in row.strip("│ ").split("│")] for row in rows]
    assert cells == [
        ["router", "sorctl-router:1.0", "unchanged", "117", "0.2"],
        ["node", "sorctl-node:1.0", "built", "396", "41.2"],
    ]


def test_a_step_line_is_one_short_line():
    instruction = "RUN python3 -m venv --without-pip /opt/venv     && pip install " + "x" * 80
    step = Step(12, 31, instruction, "venv-dispy")
    text = step_text(step)
    assert text.startswith("step 12/31  RUN python3 -m venv --without-pip")
    assert text.endswith("...") and "\n" not in text and len(text) < 70


def test_the_progress_ends_with_a_line_per_role():
    console = Console(record=True, width=120, force_terminal=False)
    with BuildProgress(console) as view:
        view.role_started("scheduler", "sorctl-scheduler:1.0")
        for n in (1, 2):
            view.role_step("scheduler", Step(n, 2, f"RUN step {n}", "os", cached=n == 1))
        view.role_finished(Built("scheduler", "sorctl-scheduler:1.0", "built", 3.0, 121.0))
        view.role_finished(Built("router", "sorctl-router:1.0", "unchanged", 0.1, 117.0))
    lines = [line.split() for line in console.export_text().splitlines() if line.strip()]
    assert ["scheduler", "built,", "2", "steps", "(1", "from", "cache)"] == [
        w for w in lines[-2] if ":" not in w
    ]
    assert lines[-1][0] == "router" and lines[-1][-1] == "unchanged"
