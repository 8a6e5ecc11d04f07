"""The field catalogue: every field of a trajectory, described once.

Like Django's `Model._meta`, this is the one place that says what a trajectory holds. The Arrow schemas,
the query parser's parameters, the in-memory projection's columns, the API serializers and their
OpenAPI parameters, the list page's columns, facets, range inputs, cells and filter chips, and the
export's field order are all derived from `FIELDS`. A new field is one entry here (plus, for a
field read from input files, its validation in `importing/validation.py`).

Each entry says where the field lives (`table`), what it holds (`kind`), how a list can be narrowed
by it (`filter`, plus "is empty" for every nullable text or list field), whether it sorts, is a facet,
a grouping key (what charts and groups split by) or a measure (what they aggregate), how a cell shows
it, and whether the list shows it by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa

TRAJECTORIES = "trajectories"
ANNOTATIONS = "annotations"
KEY = "trajectory_id"


class Kind(StrEnum):
    ID = "id"  # the unique key: raw strings in memory
    TEXT = "text"  # short strings: coded (sorted uniques + int32 codes) in memory
    LONG_TEXT = "long_text"  # steps, metadata, answers: read from LanceDB one trajectory at a time
    INT = "int"
    FLOAT = "float"
    TIME = "time"  # UTC timestamps, microseconds in memory
    BOOL = "bool"  # never null
    TRISTATE = "tristate"  # true, false or null ("not judged")
    LIST = "list"  # a list of strings
    VECTOR = "vector"  # a fixed-length float32 vector (the embedding): read from LanceDB, never shown


class Filter(StrEnum):
    EXACT = "exact"  # `name=v`, repeat for any of; "*" is a wildcard
    ANY_OF = "any_of"  # `name=v`, repeat for any of; a list field matches when it has any of them
    RANGE = "range"  # `name=v` (any of), `name_min`, `name_max` (inclusive)
    BOOLEAN = "boolean"  # true / false (and null for TRISTATE)
    CONTAINS = "contains"  # case-insensitive substring


class Display(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    REWARD = "reward"  # 4 significant digits
    SECONDS = "seconds"  # one decimal, thousands separated
    YES_NO = "yes_no"
    STAR = "star"
    DATETIME = "datetime"
    LIST = "list"


EMPTY_SUFFIX = "_empty"
MIN_SUFFIX = "_min"
MAX_SUFFIX = "_max"

VECTOR_DIM = 64  # the embedding's length (trajectories.embedding)
_ARROW = {
    Kind.ID: pa.string(),
    Kind.TEXT: pa.string(),
    Kind.LONG_TEXT: pa.string(),
    Kind.INT: pa.int64(),
    Kind.FLOAT: pa.float64(),
    Kind.TIME: pa.timestamp("us", tz="UTC"),
    Kind.BOOL: pa.bool_(),
    Kind.TRISTATE: pa.bool_(),
    Kind.LIST: pa.list_(pa.string()),
    Kind.VECTOR: pa.list_(pa.float32(), VECTOR_DIM),
}


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    table: str
    label: str
    help: str
    nullable: bool = True
    arrow: pa.DataType | None = None  # when it differs from the kind's usual type
    filter: Filter | None = None
    parameter: str | None = None  # the query parameter, when it is not the field's name
    sortable: bool = False
    facet: bool = False
    group: bool = False  # a grouping key: charts, groups and pivots split by it
    measure: bool = False  # aggregated per group (means, rates, percentiles)
    searched: bool = False  # `search` looks for a substring in it
    column: bool = False  # the list page can show it
    default_column: bool = False
    summary: bool = False  # in list rows of the API (every field is in a single trajectory's)
    range_input: bool = False  # the list page's range form has min/max inputs for it
    step: str = "1"  # the range inputs' step
    display: Display = Display.TEXT
    exported: bool = False  # a field of the canonical import format, written by the export
    choices: tuple[tuple[str, str], ...] = ()  # a BOOLEAN filter's values and their labels on the page
    internal: bool = False  # derived for the store's own use (search, similarity): not part of a record

    @property
    def arrow_type(self) -> pa.DataType:
        return self.arrow or _ARROW[self.kind]

    @property
    def param(self) -> str:
        return self.parameter or self.name

    @property
    def empty_param(self) -> str | None:
        """`<param>_empty=true|false`: nullable text and list fields can be asked for "no value"."""
        if self.filter is None or not self.nullable or self.kind not in {Kind.TEXT, Kind.LIST}:
            return None
        return self.param + EMPTY_SUFFIX

    @property
    def projected(self) -> bool:
        """Held in memory by every process: what lists filter, sort, count and show."""
        return self.kind not in (Kind.LONG_TEXT, Kind.VECTOR) and (
            self.table == ANNOTATIONS or bool(self.filter or self.sortable or self.column or self.facet)
        )

    def arrow_field(self) -> pa.Field:
        return pa.field(self.name, self.arrow_type, nullable=self.nullable)


def _f(name: str, kind: Kind, table: str, label: str, help: str, **options) -> Field:
    return Field(name=name, kind=kind, table=table, label=label, help=help, **options)


T, A = TRAJECTORIES, ANNOTATIONS
_RANGE = {"filter": Filter.RANGE, "sortable": True, "column": True, "summary": True}
_MEASURE = {**_RANGE, "measure": True, "range_input": True, "exported": True}
_REWARD = {**_MEASURE, "step": "0.01", "display": Display.REWARD}
_NAME = {"filter": Filter.EXACT, "sortable": True, "column": True, "summary": True, "exported": True}

# The order is the stored tables' column order (and so the list page's column order).
FIELDS: tuple[Field, ...] = (
    _f(KEY, Kind.ID, T, "Trajectory", "The trajectory's unique id.", nullable=False, searched=True,
       default_column=True, **_NAME),
    _f("data_id", Kind.TEXT, T, "Data id", "The question or task the rollout answered.", nullable=False,
       group=True, searched=True, default_column=True, **_NAME),
    _f("training_id", Kind.TEXT, T, "Training run", "The training run.", group=True, facet=True,
       searched=True, default_column=True, **_NAME),
    _f("agent_name", Kind.TEXT, T, "Agent", "The agent or policy model.", group=True, facet=True,
       searched=True, default_column=True, **_NAME),
    _f("epoch_id", Kind.INT, T, "Epoch", "The epoch.", group=True, range_input=True, default_column=True,
       exported=True, **_RANGE),
    _f("iteration_id", Kind.INT, T, "Iteration", "The training step (iteration).", group=True,
       range_input=True, default_column=True, exported=True, **_RANGE),
    _f("sample_id", Kind.INT, T, "Sample", "The sample within its group.", default_column=True,
       exported=True, **_RANGE),
    _f("reward", Kind.FLOAT, T, "Reward", "The total reward.", default_column=True, **_REWARD),
    _f("toolcall_reward", Kind.FLOAT, T, "Tool-call reward", "The reward for tool calls.", **_REWARD),
    _f("res_reward", Kind.FLOAT, T, "Result reward", "The reward for the result.", **_REWARD),
    _f("exec_time", Kind.FLOAT, T, "Exec time (s)", "Execution time in seconds.", step="0.1",
       display=Display.SECONDS, default_column=True, **_MEASURE),
    _f("step_count", Kind.INT, T, "Steps", "Number of steps.", nullable=False, arrow=pa.int32(),
       default_column=True, display=Display.NUMBER, **_MEASURE),
    _f("tool_call_count", Kind.INT, T, "Tool calls", "Number of tool calls.", nullable=False,
       arrow=pa.int32(), default_column=True, display=Display.NUMBER, **{**_MEASURE, "exported": False}),
    # Distinct tool names in order of first use: "used tool X" filters and facets.
    _f("tools", Kind.LIST, T, "Tools", "The tools used.", filter=Filter.ANY_OF, parameter="tool",
       facet=True, group=True, column=True, default_column=True, summary=True, display=Display.LIST),
    # The last assistant text: what the agent answered.
    _f("final_answer", Kind.LONG_TEXT, T, "Final answer", "The agent's last answer."),
    # Large types: one long agent run can carry megabytes of observations.
    _f("steps", Kind.LONG_TEXT, T, "Steps", "The steps as JSON.", nullable=False, arrow=pa.large_string()),
    _f("metadata", Kind.LONG_TEXT, T, "Metadata", "Other fields of the record, as JSON.",
       arrow=pa.large_string()),
    # Whether the last answer says anything: "rewarded but answered nothing" is a reward-hacking sign.
    _f("answered", Kind.TRISTATE, T, "Answered", "The final answer is not empty (null: not known).",
       filter=Filter.BOOLEAN, column=True, display=Display.YES_NO,
       choices=(("true", "Answered"), ("false", "No answer"), ("null", "Not known"))),
    # What `q` searches (trajectories.content): the steps' text, CJK characters set apart.
    _f("search_text", Kind.LONG_TEXT, T, "Searched text", "The steps' text, as the full-text index reads it.",
       arrow=pa.large_string(), internal=True),
    # What "similar" and failure clusters compare (trajectories.embedding).
    _f("embedding", Kind.VECTOR, T, "Embedding", "Hashed words and tool n-grams, length 1.", internal=True),
    _f("source_format", Kind.TEXT, T, "Format", "The format the record was read as.", filter=Filter.EXACT,
       sortable=True, column=True),
    _f("source", Kind.LONG_TEXT, T, "Source", "The file and line it was read from."),
    _f("import_id", Kind.TEXT, T, "Import", "The import job that stored it.", filter=Filter.EXACT,
       sortable=True, column=True, group=True),
    _f("created_at", Kind.TIME, T, "Created", "When the rollout was made: unix seconds or ISO-8601.",
       nullable=False, display=Display.DATETIME, **_RANGE),
    _f("imported_at", Kind.TIME, T, "Imported", "When it was imported.", nullable=False),
    _f("is_bookmarked", Kind.BOOL, A, "Bookmark", "Bookmarked.", nullable=False, filter=Filter.BOOLEAN,
       sortable=True, column=True, default_column=True, summary=True, display=Display.STAR,
       choices=(("true", "Bookmarked"), ("false", "Not bookmarked"))),
    _f("is_success", Kind.TRISTATE, A, "Success", "Judged successful, failed, or not judged (null).",
       filter=Filter.BOOLEAN, sortable=True, column=True, default_column=True, summary=True, measure=True,
       display=Display.YES_NO, choices=(("true", "Success"), ("false", "Failure"), ("null", "Not judged"))),
    _f("category", Kind.TEXT, A, "Category", "The analysis category.", filter=Filter.ANY_OF, sortable=True,
       facet=True, group=True, column=True, default_column=True, summary=True),
    _f("root_cause", Kind.TEXT, A, "Root cause", "The root cause (contains, case-insensitive).",
       filter=Filter.CONTAINS, column=True, summary=True),
    _f("tags", Kind.LIST, A, "Tags", "The tags.", filter=Filter.ANY_OF, parameter="tag", facet=True,
       group=True, column=True, summary=True, display=Display.LIST),
    _f("notes", Kind.TEXT, A, "Notes", "Free-text notes (contains, case-insensitive).", filter=Filter.CONTAINS),
    _f("updated_at", Kind.TIME, A, "Annotated", "When the annotation last changed.", nullable=False),
    _f("updated_by", Kind.TEXT, A, "Annotated by", "Who changed the annotation last."),
)  # fmt: skip

SEARCH_TEXT = "search_text"
EMBEDDING = "embedding"
INTERNAL = tuple(field.name for field in FIELDS if field.internal)
BY_NAME: dict[str, Field] = {field.name: field for field in FIELDS}
BY_PARAM: dict[str, Field] = {field.param: field for field in FIELDS if field.filter}


def get(name: str) -> Field:
    return BY_NAME[name]


def of_table(table: str) -> tuple[Field, ...]:
    """The table's columns in order; the key is a column of both tables."""
    return tuple(field for field in FIELDS if field.table == table or field.name == KEY)


FILTERED = tuple(field for field in FIELDS if field.filter)
SORTABLE = tuple(field.name for field in FIELDS if field.sortable)
FACETS = tuple(field for field in FIELDS if field.facet)
COLUMNS = tuple(field for field in FIELDS if field.column)
DEFAULT_COLUMNS = tuple(field.name for field in FIELDS if field.default_column)
RANGE_INPUTS = tuple(field for field in FIELDS if field.range_input)
SEARCHED = tuple(field.name for field in FIELDS if field.searched)
SUMMARY = tuple(field for field in FIELDS if field.summary)
GROUP_KEYS = tuple(field.name for field in FIELDS if field.group)
MEASURES = tuple(field.name for field in FIELDS if field.measure)
REWARDS = tuple(field.name for field in FIELDS if field.display is Display.REWARD)
EXPORTED = tuple(field.name for field in FIELDS if field.exported)
PROJECTED = tuple(field for field in FIELDS if field.projected)
