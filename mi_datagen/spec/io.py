"""YAML in, specs out: safe loading, duplicate-key detection, readable validation errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import Discriminator, Tag, TypeAdapter, ValidationError

from mi_datagen.errors import SpecError
from mi_datagen.limits import limit
from mi_datagen.spec.families import CanonicalFamily, DecayFamily
from mi_datagen.spec.models import GraphSpec


def _kind(data: Any) -> str:
    if isinstance(data, dict) and "family" in data:
        return str(data["family"])
    return "graph"


SpecFile = Annotated[
    Union[
        Annotated[GraphSpec, Tag("graph")],
        Annotated[CanonicalFamily, Tag("canonical")],
        Annotated[DecayFamily, Tag("decay")],
    ],
    Discriminator(_kind, custom_error_type="unknown_family",
                  custom_error_message="family: must be one of 'canonical', 'decay' (or omit it for an explicit spec)"),
]
"""What a spec file may hold: an explicit graph spec, or a family that expands to one."""

_ADAPTER: TypeAdapter = TypeAdapter(SpecFile)


def _check_nodes(root) -> None:
    """Duplicate keys, depth, value length and the size after alias expansion, on the composed node tree
    (``yaml.compose`` constructs no objects, so a "billion laughs" document costs nothing here)."""
    depth_lim, nodes_lim, chars_lim = limit("yaml_depth"), limit("yaml_nodes"), limit("scalar_chars")
    sizes: dict[int, int] = {}

    def size(node, depth: int) -> int:
        if depth > depth_lim.value:
            raise SpecError(f"nesting at line {node.start_mark.line + 1}: depth {depth_lim.refusal(depth)}")
        if id(node) in sizes:  # an alias: shared, counted again at every use
            return sizes[id(node)]
        total = 1
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > chars_lim.value:
                raise SpecError(f"value at line {node.start_mark.line + 1}: {chars_lim.refusal(len(node.value))}")
        elif isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, value_node in node.value:
                key = (key_node.tag, key_node.value) if isinstance(key_node, yaml.ScalarNode) else id(key_node)
                if key in seen:
                    raise SpecError(f"duplicate key {key_node.value!r} at line {key_node.start_mark.line + 1} "
                                    f"(first at line {seen[key] + 1}); each key may appear once")
                seen[key] = key_node.start_mark.line
                total += size(key_node, depth + 1) + size(value_node, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(item, depth + 1) for item in node.value)
        if total > nodes_lim.value:
            raise SpecError(f"the document expands (aliases included) to more values: {nodes_lim.refusal(total)}")
        sizes[id(node)] = total
        return total

    if root is not None:
        size(root, 0)


_TYPE_TAGS = {"float", "int", "str", "bool", "constrained-str", "constrained-float"}
_SPEC_TAGS = {"graph", "canonical", "decay"}
_TEMPLATE_TAGS = {"ones", "uniform", "onehot", "blob", "random", "file"}


def _clean_loc(loc: tuple) -> tuple:
    """Drop pydantic's union-member tags from an error location, keep field names and indices."""
    out: list = []
    for i, p in enumerate(loc):
        if isinstance(p, int):
            out.append(p)
            continue
        if p in _TYPE_TAGS or p.startswith(("tagged-union[", "function-", "list[", "dict[", "union[")):
            continue
        if i == 0 and p in _SPEC_TAGS:
            continue
        near = [x for x in loc[max(0, i - 3):i] if isinstance(x, str)]
        if p in _TEMPLATE_TAGS and near and near[-1] != "templates" and ("template" in near or "templates" in near):
            continue
        out.append(p)
    return tuple(out)


def _render_loc(loc: tuple) -> str:
    text = ""
    for p in loc:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: the field path, what is wrong, and the offending value."""
    errors = [(_clean_loc(e["loc"]), e) for e in err.errors(include_url=False)]
    # a value failing every member of a `number | parameter-name` union: keep the specific complaint
    keep = [(loc, e) for loc, e in errors
            if not (e["type"] == "string_type"
                    and any(o is not e and loc2[:len(loc)] == loc for loc2, o in errors))]
    lines = [f"{source}: invalid spec ({len(keep)} problem{'s' if len(keep) > 1 else ''})"]
    for loc, e in keep:
        msg = e["msg"].removeprefix("Value error, ")
        got = "" if e["type"] in ("value_error", "missing", "assertion_error") else f" (got {e.get('input')!r:.80})"
        where = _render_loc(loc)
        lines.append(f"  {where + ': ' if where else ''}{msg}{got}")
    return "\n".join(lines)


def parse_spec(data: Any, source: str = "<spec>") -> Union[GraphSpec, CanonicalFamily, DecayFamily]:
    """Validate a python object (as loaded from YAML/JSON) as a spec file."""
    if not isinstance(data, dict):
        raise SpecError(f"{source}: a spec must be a mapping at the top level, got {type(data).__name__}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as err:
        raise SpecError(format_validation_error(err, source)) from None


def load_yaml(text: str, source: str = "<string>") -> Any:
    """One plain YAML document (safe_load), bounded (see ``load_yaml_documents``)."""
    docs = load_yaml_documents(text, source, keep_empty=True)
    if len(docs) > 1:
        raise SpecError(f"{source}: expected a single document, found {len(docs)} (use load_specs for several)")
    return docs[0] if docs else None


def load_yaml_documents(text: str, source: str = "<string>", keep_empty: bool = False) -> list[Any]:
    """Every document of a (possibly multi-document) YAML text, empty documents dropped; plain YAML only
    (safe_load), bounded in size, nesting, value length and alias expansion, duplicate keys refused."""
    lim = limit("spec_bytes")
    if len(text) > lim.value:
        raise SpecError(f"{source}: {lim.refusal(len(text))}")
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            _check_nodes(node)
        return [d for d in yaml.safe_load_all(text) if keep_empty or d is not None]
    except SpecError as err:
        raise SpecError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        raise SpecError(f"{source}: not valid YAML (only plain YAML, no python tags): {err}") from None
    except RecursionError:
        raise SpecError(f"{source}: nested too deeply to parse; a spec nests at most "
                        f"{limit('yaml_depth').value} levels") from None
    except ValueError as err:  # a value YAML cannot construct (e.g. an integer of thousands of digits)
        raise SpecError(f"{source}: a value cannot be read: {err}") from None


def _read_text(p: Path) -> str:
    if not p.is_file():
        raise SpecError(f"{p}: spec file not found")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise SpecError(f"{p}: not a UTF-8 text file (byte {err.start}); a spec is YAML text") from None


def load_spec(path: str | Path) -> Union[GraphSpec, CanonicalFamily, DecayFamily]:
    """One spec file of one document (see ``load_specs`` for multi-document files such as ``expand``'s output)."""
    p = Path(path)
    return parse_spec(load_yaml(_read_text(p), str(p)), str(p))


def load_specs(path: str | Path) -> list[Union[GraphSpec, CanonicalFamily, DecayFamily]]:
    """Every spec of a file: one per YAML document (``mi-datagen expand`` writes one per sweep member)."""
    p = Path(path)
    docs = load_yaml_documents(_read_text(p), str(p))
    if not docs:
        raise SpecError(f"{p}: the file holds no spec (empty YAML)")
    return [parse_spec(d, f"{p} (document {i + 1})" if len(docs) > 1 else str(p)) for i, d in enumerate(docs)]


def loads_spec(text: str, source: str = "<string>") -> Union[GraphSpec, CanonicalFamily, DecayFamily]:
    """One spec from YAML text (``source`` names it in error messages)."""
    return parse_spec(load_yaml(text, source), source)


def dump_spec(spec: GraphSpec) -> str:
    """An explicit spec as YAML (the output of ``mi-datagen expand``)."""
    data = spec.model_dump(mode="json", exclude_defaults=False)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=110)


def json_schema() -> dict:
    """JSON Schema of a spec file (for editor completion)."""
    schema = _ADAPTER.json_schema()
    schema["title"] = "mi-datagen spec"
    return schema
