"""Checks of the values a user can set, shared by every config node.

Each check reads one key of a node (a DictConfig, a plain mapping, or a list
with an index as key), returns the value as the type it must have, or raises a
ConfigError with one sentence: the value's full name and value as a user would
write it on the command line, what it must be, and the fix, e.g.
``dataset.n_train=0 must be a positive whole number; give e.g. dataset.n_train=16.``
They read and judge values only (no disk, no data), so a node can be checked
before anything slow happens.

Hydra parses override values itself: ``size=abc`` arrives as text, ``size=1.5``
as a float, ``size=true`` as a bool and ``size=null`` as None. Python counts
bools as ints, so every number check refuses bools explicitly, and a float is
refused where a whole number goes, even ``128.0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from omegaconf.errors import MissingMandatoryValue

from skipexp.errors import ConfigError

Key = str | int  # a mapping's key, or a list's index
Node = Mapping[str, Any] | Sequence[Any]
T = TypeVar("T")


def full_name(node: str, key: Key) -> str:
    """``dataset.size`` for node ``dataset`` and key ``size``; ``dataset.sources[0]`` for an index; ``key`` alone
    when ``node`` is empty (e.g. a command-line flag such as ``--size``)."""
    if isinstance(key, int):
        return f"{node}[{key}]"
    return f"{node}.{key}" if node else key


def shown(value: Any) -> str:
    """A value as a user writes it in an override: ``null``, ``true``, ``abc``, ``1.5``; blank text quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value.strip() else repr(value)
    return str(value)


def refuse(name: str, value: Any, need: str, fix: str) -> ConfigError:
    """The one sentence of every check: ``NAME=VALUE must be NEED; FIX.`` (raise what it returns)."""
    return ConfigError(f"{name}={shown(value)} must be {need}; {fix}.")


def value(node: str, cfg: Node, key: Key) -> Any:
    """``cfg[key]``, or a ConfigError naming the key when it was removed (``~key``) or left unset (``???``)."""
    name = full_name(node, key)
    try:
        return cfg[key]  # type: ignore[index]
    except MissingMandatoryValue as err:
        raise ConfigError(f"{name} is not set; give {name}=VALUE.") from err
    except (KeyError, IndexError) as err:
        raise ConfigError(f"{name} is missing from the config; add it back with +{name}=VALUE.") from err


def _give(name: str, example: Any) -> str:
    return f"give e.g. {name}={shown(example)}"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _bounds(kind: str, minimum: float | None, maximum: float | None) -> str:
    """``a whole number from 1 to 29``, ``a number of 0 or more``..."""
    if minimum is not None and maximum is not None:
        return f"{kind} from {minimum:g} to {maximum:g}"
    if minimum is not None:
        return f"{kind} of {minimum:g} or more"
    if maximum is not None:
        return f"{kind} of {maximum:g} or less"
    return kind


def integer(node: str, cfg: Node, key: Key, minimum: int | None = None, maximum: int | None = None,
            example: int | None = None, need: str | None = None) -> int:
    """A whole number (not a bool, not a float) in ``[minimum, maximum]``; ``need`` rewords the requirement."""
    name, v = full_name(node, key), value(node, cfg, key)
    if _is_int(v) and (minimum is None or v >= minimum) and (maximum is None or v <= maximum):
        return int(v)
    if need is None:
        need = "a positive whole number" if minimum == 1 and maximum is None else \
            _bounds("a whole number", minimum, maximum)
    fallback = minimum if minimum is not None else maximum if maximum is not None else 0
    raise refuse(name, v, need, _give(name, fallback if example is None else example))


def positive_int(node: str, cfg: Node, key: Key, example: int | None = None, need: str | None = None) -> int:
    """A whole number of 1 or more (a count, a size)."""
    return integer(node, cfg, key, minimum=1, example=example, need=need)


def non_negative_int(node: str, cfg: Node, key: Key, example: int | None = None, need: str | None = None) -> int:
    """A whole number of 0 or more (where 0 means off, or the whole image)."""
    return integer(node, cfg, key, minimum=0, example=example, need=need)


def number(node: str, cfg: Node, key: Key, minimum: float | None = None, maximum: float | None = None,
           positive: bool = False, example: float | None = None, need: str | None = None) -> float:
    """A finite number (int or float, not a bool) in ``[minimum, maximum]``, and above 0 when ``positive``."""
    name, v = full_name(node, key), value(node, cfg, key)
    if _is_number(v) and (minimum is None or v >= minimum) and (maximum is None or v <= maximum) \
            and (not positive or v > 0):
        return float(v)
    if need is None:
        need = "a positive number" if positive and minimum is None and maximum is None else \
            _bounds("a number", minimum, maximum)
    fallback = minimum if minimum is not None else maximum if maximum is not None else 1
    raise refuse(name, v, need, _give(name, fallback if example is None else example))


def positive_number(node: str, cfg: Node, key: Key, example: float | None = None, need: str | None = None) -> float:
    """A finite number above 0 (a size, a rate)."""
    return number(node, cfg, key, positive=True, example=example, need=need)


def non_negative_number(node: str, cfg: Node, key: Key, example: float | None = None,
                        need: str | None = None) -> float:
    """A finite number of 0 or more (an angle, a scale, where 0 means off)."""
    return number(node, cfg, key, minimum=0, example=example, need=need)


def probability(node: str, cfg: Node, key: Key, example: float | None = None) -> float:
    """A number from 0 to 1."""
    return number(node, cfg, key, minimum=0, maximum=1, example=0.5 if example is None else example)


RATE = "a number from 0 up to (not including) 1"


def rate(node: str, cfg: Node, key: Key, example: float | None = None) -> float:
    """A number in [0, 1): a dropout rate, a moving-average decay, a momentum."""
    return number(node, cfg, key, minimum=0, maximum=math.nextafter(1.0, 0.0), example=example, need=RATE)


def boolean(node: str, cfg: Node, key: Key) -> bool:
    """``true`` or ``false`` (not 0/1, not text)."""
    name, v = full_name(node, key), value(node, cfg, key)
    if isinstance(v, bool):
        return v
    raise refuse(name, v, "true or false", f"give {name}=true or {name}=false")


def one_of(node: str, cfg: Node, key: Key, options: Iterable[T], fix: str | None = None) -> T:
    """One of ``options``, of the same type too (so ``true`` is not taken for the option 1); ``fix`` replaces
    ``pick one of them``."""
    name, v = full_name(node, key), value(node, cfg, key)
    options = tuple(options)
    for option in options:
        if type(v) is type(option) and v == option:
            return option
    if len(options) == 1:
        raise refuse(name, v, shown(options[0]), fix or f"give {name}={shown(options[0])}")
    raise ConfigError(f"{name}={shown(v)} is not one of {', '.join(shown(o) for o in options)}; "
                      f"{fix or 'pick one of them'}.")


def text(node: str, cfg: Node, key: Key, what: str = "text", example: str = "...") -> str:
    """Non-blank text such as a path or a URL; ``what`` names it in the sentence (``a path``)."""
    name, v = full_name(node, key), value(node, cfg, key)
    if isinstance(v, str) and v.strip():
        return v
    fix = _give(name, example)
    if _is_number(v) or isinstance(v, bool):
        fix += f" (a name that reads as a number or true/false needs quotes: '{name}=\"{shown(v)}\"')"
    raise refuse(name, v, what, fix)


def optional(check: Callable[..., T], node: str, cfg: Node, key: Key, *args: Any, **kwargs: Any) -> T | None:
    """None when the value is null, else ``check(node, cfg, key, ...)``'s result."""
    if value(node, cfg, key) is None:
        return None
    return check(node, cfg, key, *args, **kwargs)


def mapping(node: str, cfg: Node, key: Key, what: str, fix: str) -> Mapping[str, Any]:
    """A node of keys and values (``dataset.sha256``)."""
    name, v = full_name(node, key), value(node, cfg, key)
    if isinstance(v, Mapping):
        return v
    raise refuse(name, v, what, fix)


def sequence(node: str, cfg: Node, key: Key, what: str, fix: str) -> Sequence[Any]:
    """A list (``dataset.sources``); text is not taken for a list of its characters."""
    name, v = full_name(node, key), value(node, cfg, key)
    if isinstance(v, Sequence) and not isinstance(v, str):
        return v
    raise refuse(name, v, what, fix)


def known_keys(node: str, cfg: Mapping[str, Any], keys: Iterable[str], where: str | None = None) -> None:
    """Refuse a key that nothing reads (added with ``+node.key=...``, often a misspelt one)."""
    keys = tuple(keys)
    for key in cfg:
        if key not in keys:
            raise ConfigError(f"{full_name(node, str(key))} is not a key of {where or node} (its keys are "
                              f"{', '.join(keys)}); remove it or correct its spelling.")
