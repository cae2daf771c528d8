"""The schema of Upstox's v3 ``MarketDataFeedV3.proto``, as tables the Numba decoder walks.

Every message type reachable from ``FeedResponse`` (the official SDK's
``upstox_client/feeder/proto/MarketDataFeedV3_pb2.py``) gets a type id (its position in
:data:`TYPE_NAMES`); :data:`SCHEMA` gives the field kind of each (type id, field number), with a
message field's child type id folded into its kind. The tests check the table against the SDK's
descriptors. :mod:`engine.brokers.upstox.proto_nb` decodes frames with it.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DOUBLE_VALUE",
    "ENTRY",
    "FEED",
    "FEED_RESPONSE",
    "FIRST_LEVEL",
    "FULL_FEED",
    "GREEKS",
    "GROUP",
    "INDEX_FF",
    "KIND_FIXED64",
    "KIND_MESSAGE",
    "KIND_STRING",
    "KIND_UNKNOWN",
    "KIND_VARINT",
    "LTPC",
    "MARKET_FF",
    "MARKET_INFO",
    "MARKET_LEVEL",
    "MARKET_OHLC",
    "MAX_DEPTH",
    "MAX_FIELD",
    "OHLC",
    "QUOTE",
    "SCHEMA",
    "SEGMENT_ENTRY",
    "STATUS_ENTRY",
    "STATUS_INFO",
    "TYPE_NAMES",
    "WIRE_OF_KIND",
]

#: message types of the schema, by id (a pseudo type for unknown groups last)
TYPE_NAMES: tuple[str, ...] = (
    "FeedResponse",
    "FeedResponse.FeedsEntry",
    "Feed",
    "LTPC",
    "FullFeed",
    "MarketFullFeed",
    "IndexFullFeed",
    "FirstLevelWithGreeks",
    "MarketLevel",
    "Quote",
    "OptionGreeks",
    "MarketOHLC",
    "OHLC",
    "MarketInfo",
    "MarketInfo.SegmentStatusEntry",
    "MarketInfo.StatusInfoEntry",  # CasMarketStatusEntry and PreOpenSessionStatusEntry
    "StatusInfo",
    "google.protobuf.DoubleValue",
    "<group>",
)
#: message type ids, in TYPE_NAMES order
(
    FEED_RESPONSE,
    ENTRY,
    FEED,
    LTPC,
    FULL_FEED,
    MARKET_FF,
    INDEX_FF,
    FIRST_LEVEL,
    MARKET_LEVEL,
    QUOTE,
    GREEKS,
    MARKET_OHLC,
    OHLC,
    MARKET_INFO,
    SEGMENT_ENTRY,
    STATUS_ENTRY,
    STATUS_INFO,
    DOUBLE_VALUE,
    GROUP,
) = range(len(TYPE_NAMES))

#: field kinds of the schema; a message field's child type id is stored as ``kind + 8 * child``
KIND_UNKNOWN, KIND_VARINT, KIND_FIXED64, KIND_STRING, KIND_MESSAGE = range(5)
#: highest field number any message of the schema declares
MAX_FIELD = 16
#: deepest nesting of messages and groups accepted (upb's default recursion limit)
MAX_DEPTH = 100

#: short names for the table below: varint (int64, enum, bool), double, string
_V, _D, _S = KIND_VARINT, KIND_FIXED64, KIND_STRING


def _message(child: int) -> int:
    return KIND_MESSAGE + 8 * child


#: the fields of MarketDataFeedV3.proto by message type id: field number -> kind
_FIELDS: dict[int, dict[int, int]] = {
    FEED_RESPONSE: {1: _V, 2: _message(ENTRY), 3: _V, 4: _message(MARKET_INFO)},
    ENTRY: {1: _S, 2: _message(FEED)},
    FEED: {1: _message(LTPC), 2: _message(FULL_FEED), 3: _message(FIRST_LEVEL), 4: _V},
    LTPC: {1: _D, 2: _V, 3: _V, 4: _D, 5: _message(DOUBLE_VALUE)},
    FULL_FEED: {1: _message(MARKET_FF), 2: _message(INDEX_FF)},
    MARKET_FF: {
        1: _message(LTPC),
        2: _message(MARKET_LEVEL),
        3: _message(GREEKS),
        4: _message(MARKET_OHLC),
        **dict.fromkeys((5, 7, 8, 9, 10, 11, 12), _D),
        **dict.fromkeys((6, 13, 14, 15, 16), _V),
    },
    INDEX_FF: {1: _message(LTPC), 2: _message(MARKET_OHLC)},
    FIRST_LEVEL: {
        1: _message(LTPC),
        2: _message(QUOTE),
        3: _message(GREEKS),
        4: _V,
        5: _D,
        6: _D,
    },
    MARKET_LEVEL: {1: _message(QUOTE)},
    QUOTE: {1: _V, 2: _D, 3: _V, 4: _D},
    GREEKS: dict.fromkeys(range(1, 6), _D),
    MARKET_OHLC: {1: _message(OHLC)},
    OHLC: {1: _S, 2: _D, 3: _D, 4: _D, 5: _D, 6: _V, 7: _V},
    MARKET_INFO: {
        1: _message(SEGMENT_ENTRY),
        2: _message(STATUS_ENTRY),
        3: _message(STATUS_ENTRY),
    },
    SEGMENT_ENTRY: {1: _S, 2: _V},
    STATUS_ENTRY: {1: _S, 2: _message(STATUS_INFO)},
    STATUS_INFO: {1: _S, 2: _V},
    DOUBLE_VALUE: {1: _D},
    GROUP: {},
}

#: field kind by (message type id, field number), from ``_FIELDS``
SCHEMA = np.zeros((len(TYPE_NAMES), MAX_FIELD + 1), np.int64)
for _type, _fields in _FIELDS.items():
    for _number, _kind in _fields.items():
        SCHEMA[_type, _number] = _kind

#: wire type of each field kind (-1: none)
WIRE_OF_KIND = np.array([-1, 0, 1, 2, 2], np.int64)
