"""Where data enters: the contract, readers, demo data, splits, text rendering, the Ray Data
pipeline of training examples. Imports config only.
"""

from llmrec.data.catalogue import Catalogue
from llmrec.data.contract import (
    INTERACTIONS_SCHEMA,
    ITEMS_SCHEMA,
    USERS_SCHEMA,
    Checked,
    ContractError,
    DataError,
    DataSourceError,
    check_interactions,
    check_items,
    check_users,
)
from llmrec.data.demo import generate_demo
from llmrec.data.events import EventSplit, split_events
from llmrec.data.files import Read, read_rows
from llmrec.data.readers import read_movielens, read_table
from llmrec.data.splits import Split, k_core, leave_one_out
from llmrec.data.text import ItemText, render_item, render_user

__all__ = [
    "INTERACTIONS_SCHEMA",
    "ITEMS_SCHEMA",
    "USERS_SCHEMA",
    "Catalogue",
    "Checked",
    "ContractError",
    "DataError",
    "DataSourceError",
    "EventSplit",
    "ItemText",
    "Read",
    "Split",
    "check_interactions",
    "check_items",
    "check_users",
    "generate_demo",
    "k_core",
    "leave_one_out",
    "read_movielens",
    "read_rows",
    "read_table",
    "render_item",
    "render_user",
    "split_events",
]
