"""Recipes: what a phase run of one table will do, as data.

A phase gathers facts (etl/phases/facts.py), decides its situation from them with a pure function, and
turns plan + situation into a :class:`Recipe`: a frozen, ordered list of steps, each labelled with the
branch of the situation it belongs to and holding the rendered statements it runs. One executor
(etl/executor.py) runs every recipe; `etl render` prints it (:func:`describe`); the golden files are the
same text. So what is printed and tested is what runs.

Steps:

* :class:`Exec` one statement; :class:`Chunked` one statement run over chunks of the primary key, each
  chunk's end found first and its size following the time the last chunk took; :class:`Observe` one statement whose answer is a watermark maximum;
  :class:`Note` a line for the run history; :class:`When` steps that run only if a check answers true;
* :class:`Transfer` a read feeding a sink: a :class:`BlockRead` (boundary and block statements: blocks of
  text rendered by MySQL) or a :class:`BatchRead` (keyset batches of rows), into a :class:`CopyStream`
  (one COPY of every block) or :class:`PerBlock` steps (run for each block: LOAD DATA of the block's file,
  an upsert of a batch's rows, a checkpoint, a commit); its setup and finish steps run only when the read
  has rows;
* :class:`Checkpoint` and :class:`Track` the tracking statements (etl/tracking.py writes them);
  :class:`Commit`; :class:`DeleteFeed` the deletedobject feed's statements.

Bind values known when the recipe is made (windows, keysets) are in the steps; those known only when it
runs are :class:`RunValue` placeholders (the load id, a block's file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Iterator, Mapping, Union

from etl import watermark
from etl.plan import Plan
from etl.render import Statement
from etl.tracking import Rejects, Writer


@dataclass(frozen=True)
class RunValue:
    """A bind whose value is known only when the recipe runs; printed by name."""

    name: str


LOAD_ID = RunValue("load id")        # raw._etl_load_id: the run-history id of this load
BLOCK_FILE = RunValue("block file")  # the private file a block of infile text was written to


# ---------------------------------------------------------------- statements rendered on demand

@dataclass(frozen=True)
class Variants:
    """One template with boolean flags (a read's first and following queries), each variant rendered the
    first time it is used and the same Statement afterwards; `all` renders every one (for printing).
    Rendering all four block variants of a wide table up front would cost more than a small table's run."""

    render: Callable[..., Statement]
    flags: tuple[str, ...]
    labels: Mapping[tuple[bool, ...], str]
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def get(self, *values: bool) -> Statement:
        if values not in self._cache:
            self._cache[values] = self.render(**dict(zip(self.flags, values)))
        return self._cache[values]

    def all(self) -> list[tuple[str, Statement]]:
        return [(label, self.get(*values)) for values, label in self.labels.items()]


BOUNDARY_LABELS = {(False,): "first boundary", (True,): "next boundary"}
BLOCK_LABELS = {(False, True): "first block", (True, True): "next block",
                (False, False): "only block", (True, False): "last block"}
BATCH_LABELS = {(False,): "first batch", (True,): "next batches"}
CHUNK_LABELS = {(False, True): "first chunk", (True, True): "next chunk",
                (False, False): "only chunk", (True, False): "last chunk"}
LONG_ROW_LABELS = {(): "long row alone"}
LONG_PART_LABELS = {(): "long value part"}
APPEND_LABELS = {(): "long value part appended"}
KEY_ROW_LABELS = {(): "rejected row by its key"}


# ---------------------------------------------------------------- steps

@dataclass(frozen=True)
class Step:
    branch: str  # the branch of the situation this step belongs to ("always" when it runs in every one)


@dataclass(frozen=True)
class Exec(Step):
    """Run one statement on a connection (a role of the phase: source, replica, analytics)."""

    on: str
    statement: Statement
    params: Mapping[str, Any] = field(default_factory=dict)
    counts: tuple[str, ...] = ()       # Outcome counters its affected rows add to (rows_read, rows_written)
    progress: str | None = None        # label of a progress line while it runs (a server-side copy)
    #: Asked right after the statement: its warnings, each one an error (LOAD DATA LOCAL turns a strict
    #: sql_mode's errors into warnings and keeps the value cut or clamped).
    warnings: Statement | None = None


@dataclass(frozen=True)
class Chunked(Step):
    """Run one statement chunk by chunk over a table's primary key (a server-side copy): per chunk the
    boundary query finds the chunk's last key (`offset` keys on, index only), then `statement` runs on the
    rows of its filter after the previous chunk's last key up to it. The chunk's keys follow the time both
    took (etl/blocks.resize), so no statement locks a MyISAM source table for much longer than `seconds`,
    whether or not the filter's column is indexed: the chunks walk the key, never the watermark."""

    on: str
    boundary: Variants                 # after_key; binds: k<i>, offset
    statement: Variants                # after_key, upto_key; binds: `params`, k<i>, u<i>
    params: Mapping[str, Any]
    kinds: tuple[str, ...]             # how each key column's value is typed (watermark.typed)
    seconds: float
    counts: tuple[str, ...] = ()
    progress: str | None = None


@dataclass(frozen=True)
class ExecRows(Step):
    """Run one statement once per row of a batch (executemany), the row's values bound as `names`."""

    on: str
    statement: Statement
    names: tuple[str, ...]
    counts: tuple[str, ...] = ()
    packet: Statement | None = None    # asks the server's max_allowed_packet: a longer row is written in parts
    parts: "RowParts | None" = None    # how (without it a longer row fails by name)
    #: Where a row with a value longer than the server's max_allowed_packet is recorded and skipped
    #: (etl.tracking.Rejects); without it such a row fails the table by name.
    rejects: Rejects | None = None


@dataclass(frozen=True)
class RowParts:
    """How a row longer than the server's max_allowed_packet is written (etl/executor.py write_in_parts):
    the statement with its long values empty, then each long value appended in parts far below the limit."""

    key: tuple[int, ...]                    # the key columns' positions in a row
    values: tuple[tuple[int, Variants], ...]  # per long column its position and append (binds part, the key r<i>)


@dataclass(frozen=True)
class Retry(Step):
    """First in a copy run: the table's rejected rows (etl/tracking.py Rejects), each read again by its key
    alone on `read_on` and written by `write`; a row that moved is marked so, one that still does not fit
    is recorded again (its last try), one gone at the source is forgotten. Commits the writing side."""

    read_on: str
    row: Variants                           # no flags; binds the key r<i> (and long_row with long values)
    long_values: tuple["LongValue", ...]    # as BatchRead's
    packet: Statement                       # the reading server's max_allowed_packet
    write: ExecRows
    rejects: Rejects


@dataclass(frozen=True)
class Observe(Step):
    """One statement answering the largest value of a watermark column: recorded as read."""

    on: str
    statement: Statement
    params: Mapping[str, Any]
    column: str
    kind: str


@dataclass(frozen=True)
class Note(Step):
    """A line for the run history, and for the log at level `log` (info, warning) when given."""

    text: str
    log: str | None = None


@dataclass(frozen=True)
class When(Step):
    """Run `then` when `check` answers true; otherwise note `otherwise`."""

    on: str
    check: Statement
    then: tuple[Step, ...]
    otherwise: str


@dataclass(frozen=True)
class LongValue:
    """One long value of a row read alone: its field in the line, how it is escaped, the part statement."""

    position: int                           # the field's index in the line (the column's in plan.columns)
    kind: str                               # how etl/blocks.py escapes it: copy text, copy binary, infile
    part: Variants                          # no flags; binds part_start, part_length and the key r<i>


@dataclass(frozen=True)
class LongRows:
    """How a block read replaces a long row's marker line (see _macros/copy_text.sql.j2): the row read
    alone, its long values in parts, escaped in Python. Rendered on first use, like Variants: most runs
    meet no long row, and a wide table has many text columns."""

    row: Variants                           # no flags; binds the key r<i> (and the block's load id)
    values: tuple[LongValue, ...]


@dataclass(frozen=True)
class BlockRead:
    """Blocks of text rendered by MySQL (etl/blocks.py read_blocks), read in a thread ahead of the sink."""

    on: str
    session: tuple[Statement, Statement]    # the block-size setting, and the limit it gives
    boundary: Variants                      # after_key
    block: Variants                         # after_key, upto_key
    params: Mapping[str, Any]               # the block's binds besides the keysets
    start_after: tuple | None = None        # resume past this key (plan order)
    fresh_reads: str | None = None          # commit the reading connection after each block; fault point
    seconds: float | None = None            # a block's queries aim at this duration (the source's)
    long_rows: LongRows | None = None       # a long row's marker line, replaced by the row read alone


@dataclass(frozen=True)
class BatchRead:
    """Keyset batches of rows as values (etl/blocks.py read_batches), read by the writing thread."""

    on: str
    batch: Variants                         # after_key
    params: Mapping[str, Any]
    start_after: tuple | None = None
    fresh_reads: bool = True                # commit the reading connection after each batch
    seconds: float | None = None            # a batch's query aims at this duration (the source's)
    #: Long values the batch holds back (its last column flags the row, bind long_row), each read in parts
    #: (etl/blocks.py read_long_values); `packet` asks the reading server's max_allowed_packet.
    long_values: tuple["LongValue", ...] = ()
    packet: Statement | None = None


@dataclass(frozen=True)
class CopyStream:
    """Every block into one COPY ... FROM STDIN (the text is already COPY text), fed by the target
    dialect's `feed(cursor, statement, chunks)`."""

    on: str
    statement: Statement
    feed: Callable[[Any, Statement, Iterator[bytes]], None]
    counts: tuple[str, ...] = ()            # the rows copied count as these Outcome counters
    fault: str | None = None                # fault point passed after each block is handed over


@dataclass(frozen=True)
class PerBlock:
    """Steps run for each block (or batch): its writes, then -- the block counted as read -- its
    checkpoint and commit. With `files` (the target dialect's private block files), each block is first
    written to a file whose path the steps bind as `file_value`."""

    steps: tuple[Step, ...]
    files: Callable[[], ContextManager[Callable[[bytes], str]]] | None = None
    file_value: RunValue = BLOCK_FILE


@dataclass(frozen=True)
class Transfer(Step):
    """Rows from a read into a sink. `setup` runs before the first block and `finish` after the last,
    both only when the read has rows."""

    read: Union[BlockRead, BatchRead]
    sink: Union[CopyStream, PerBlock]
    label: str                              # of the progress line
    estimate: int | None = None             # rows expected (a full read), for the progress line
    setup: tuple[Step, ...] = ()
    finish: tuple[Step, ...] = ()


@dataclass(frozen=True)
class Checkpoint(Step):
    """Inside a block loop: the watermark so far, committed with the block (status running)."""

    on: str
    writer: Writer


@dataclass(frozen=True)
class Track(Step):
    """The final tracking of the run (status, watermarks, run history), in the data's transaction."""

    on: str
    writer: Writer
    fault: str | None = None                # fault point passed just before


@dataclass(frozen=True)
class Commit(Step):
    on: str
    fault_before: str | None = None
    fault_after: str | None = None


@dataclass(frozen=True)
class DeleteFeed(Step):
    """OpenDental's deletedobject log past the feed's own watermark: the logged keys gone upstream are
    deleted downstream (etl/phases/deletes.py)."""

    read_on: str
    write_on: str
    table: str
    object_type: int
    state: tuple[Statement, Statement]      # the feed's watermark: read, save (tracking)
    log: Statement                          # a batch of the log
    existing: Statement                     # which of its keys still exist upstream
    delete: Statement                       # delete the others downstream
    batch: int
    read_keys: Callable[[list[int]], Any]   # a list of keys as the reading / writing driver binds it
    write_keys: Callable[[list[int]], Any]
    key_column: str = ""
    record: Statement | None = None         # tracking: the keys deleted, for the dbt models (raw only)


@dataclass(frozen=True)
class Example:
    """A situation to show for every table (the golden files; tests/unit/test_recipes.py checks that a
    phase's examples reach every branch its decide() can): the plan's strategy, the facts a phase
    gathers, and whether the table has a crowded second to resume past, a deletedobject feed, and a
    column its target lacks (schema drift)."""

    name: str
    strategy: str                 # full | incremental (the table's primary or fallback strategy)
    facts: Any
    resume: bool = False
    deletes: bool = False
    drift: bool = False


@dataclass(frozen=True)
class Recipe:
    phase: str
    plan: Plan
    situation: Any                          # the phase's situation (printed by its describe())
    steps: tuple[Step, ...]

    def walk(self) -> Iterator[Step]:
        """Every step, nested ones included, in order."""
        yield from _walk(self.steps)

    def statements(self) -> list[Statement]:
        """Every statement of the recipe, in order (every variant of a read)."""
        return [s for _, _, _, s in _lines(self.steps, "") if s is not None]


def _walk(steps: tuple[Step, ...]) -> Iterator[Step]:
    for step in steps:
        yield step
        if isinstance(step, When):
            yield from _walk(step.then)
        elif isinstance(step, Transfer):
            yield from _walk(step.setup)
            if isinstance(step.sink, PerBlock):
                yield from _walk(step.sink.steps)
            yield from _walk(step.finish)


# ---------------------------------------------------------------- printing (etl render, golden files)

def _title(step: Step) -> str:
    counts = f"; its rows count as {' and '.join(step.counts)}" if getattr(step, "counts", ()) else ""
    if isinstance(step, Exec):
        return f"run on the {step.on}{counts}"
    if isinstance(step, Chunked):
        return f"run on the {step.on} chunk by chunk over the primary key (~{step.seconds:g} s each){counts}"
    if isinstance(step, ExecRows):
        return f"run on the {step.on} once per row{counts}"
    if isinstance(step, Observe):
        return f"run on the {step.on}: the largest {step.column} read"
    if isinstance(step, Retry):
        return (f"the rejected rows again: each read alone on the {step.read_on}, written on the {step.write.on} "
                f"once per row, marked moved for the load; commit")
    if isinstance(step, Note):
        return f"note: {step.text}"
    if isinstance(step, When):
        return f"ask the {step.on}; when the answer is true run the steps below, else note: {step.otherwise}"
    if isinstance(step, Transfer):
        read = step.read
        kind = "block read" if isinstance(read, BlockRead) else "batch read"
        into = (f"one COPY on the {step.sink.on}" if isinstance(step.sink, CopyStream) else "the steps below, per block")
        resume = f", resuming after key ({_key(read.start_after)})" if read.start_after is not None else ""
        return f"{kind} of the {read.on}{resume} -> {into}"
    if isinstance(step, Checkpoint):
        return f"checkpoint on the {step.on} (tracking, status running)"
    if isinstance(step, Track):
        return f"tracking on the {step.on}"
    if isinstance(step, Commit):
        return f"commit the {step.on}"
    if isinstance(step, DeleteFeed):
        return (f"deletedobject feed: the log on the {step.read_on} (ObjectType {step.object_type}), "
                f"deletes on the {step.write_on}")
    raise TypeError(step)


def _statements(step: Step) -> list[tuple[str, Statement]]:
    if isinstance(step, Exec) and step.warnings is not None:
        return [("", step.statement), ("warnings", step.warnings)]
    if isinstance(step, ExecRows) and step.packet is not None:
        out = [("", step.statement), ("a long row's limit", step.packet)]
        for _, append in (step.parts.values if step.parts is not None else ()):
            out += append.all()
        if step.rejects is not None:
            out.append(("a value longer than the limit: the row rejected", step.rejects.upsert))
        return out
    if isinstance(step, Retry):
        out = [("rejected rows", step.rejects.select)] + step.row.all() + [("a long row's limit", step.packet)]
        for value in step.long_values:
            out += value.part.all()
        return out + _statements(step.write) + [("moved", step.rejects.moved), ("gone", step.rejects.delete)]
    if isinstance(step, (Exec, ExecRows, Observe)):
        return [("", step.statement)]
    if isinstance(step, When):
        return [("check", step.check)]
    if isinstance(step, Chunked):
        return step.boundary.all() + step.statement.all()
    if isinstance(step, Transfer):
        read = step.read
        out: list[tuple[str, Statement]] = []
        if isinstance(read, BlockRead):
            out += [("session", read.session[0]), ("session", read.session[1])]
            out += read.boundary.all() + read.block.all()
            if read.long_rows is not None:
                out += read.long_rows.row.all()
                for value in read.long_rows.values:
                    out += value.part.all()
        else:
            out += read.batch.all()
            if read.packet is not None:
                out.append(("a long row's limit", read.packet))
            for value in read.long_values:
                out += value.part.all()
        if isinstance(step.sink, CopyStream):
            out.append(("sink", step.sink.statement))
        return out
    if isinstance(step, (Checkpoint, Track)):
        return [("", s) for s in step.writer.statements]
    if isinstance(step, DeleteFeed):
        return [("feed watermark", step.state[0]), ("log", step.log), ("existing", step.existing),
                ("delete", step.delete)] + ([("deleted keys", step.record)] if step.record is not None else []) + [
                ("feed watermark", step.state[1])]
    return []


def _children(step: Step) -> list[tuple[str, tuple[Step, ...]]]:
    if isinstance(step, When):
        return [("then", step.then)]
    if isinstance(step, Transfer):
        parts = [("before the first block", step.setup)]
        if isinstance(step.sink, PerBlock):
            parts.append(("for each block", step.sink.steps))
        return parts + [("after the last block", step.finish)]
    return []


def _key(values: tuple) -> str:
    return ", ".join(str(watermark.format(v)) if not isinstance(v, str) else v for v in values)


def _lines(steps: tuple[Step, ...], prefix: str, start: int = 1) -> Iterator[tuple[str, str, str, Statement | None]]:
    """(number, header, statement label, statement) per printed item; statement None for a header."""
    for i, step in enumerate(steps, start=start):
        number = f"{prefix}{i}"
        yield number, f"[{step.branch}] {_title(step)}", "", None
        for label, statement in _statements(step):
            yield number, "", label, statement
        nested = [(part, child) for part, children in _children(step) for child in children]
        for j, (part, child) in enumerate(nested, start=1):
            if j == 1 or part != nested[j - 2][0]:
                yield number, f"{part}:", "", None
            yield from _lines((child,), f"{number}.", j)


def describe(recipe: Recipe, *, shared: Callable[[Statement], str | None] | None = None) -> str:
    """The recipe as commented SQL: the plan, the situation, then every step with its branch and the
    statements it runs (each with its bind names). `shared(statement)` may name a file that holds the
    statement's text instead (the golden files of statements that are the same for every table)."""
    parts = [f"-- {line}" for line in recipe.plan.describe().splitlines()]
    parts.append(f"-- situation: {recipe.situation.describe()}")
    for number, header, label, statement in _lines(recipe.steps, ""):
        if statement is None:
            parts.append(f"\n-- {number}. {header}" if not header.endswith(":") else f"\n-- {number}, {header}")
            continue
        binds = ", ".join(f":{b}" for b in sorted(statement.binds)) or "none"
        title = f"-- {statement.name}" + (f" ({label})" if label else "") + f"  (binds: {binds})"
        where = shared(statement) if shared else None
        parts.append(f"{title}\n-- = {where}" if where else f"{title}\n{statement.text.rstrip()};")
    return "\n".join(parts) + "\n"
