"""Recipe loading: YAML -> validated, normalized `Recipe`, with errors that point at the line."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import RecipeError, did_you_mean
from .limits import MAX_SEED, MAX_VARIANTS
from .ops import REGISTRY
from .ops.base import Color, ParamError
from .ops.resample import RESAMPLERS
from .pipeline import COMPOSE_KINDS, Compose, Node, Step

RECIPE_VERSIONS = (1,)
FORMATS = ("jpeg", "png", "webp", "same")
DEFAULT_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")  # sorted
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold


@dataclass(frozen=True)
class Recipe:
    """A validated recipe; `to_dict()` is its normalized form and `sha256` its identity."""

    pipeline: tuple[Node, ...] = ()
    version: int = 1
    seed: int = 0
    variants: int = 5
    balance_target: int | None = None
    include_originals: bool = False
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    max_pixels: int = DEFAULT_MAX_PIXELS
    format: str = "jpeg"
    quality: int = 90
    background: Any = 255
    compress_level: int = 6
    lossless: bool = False
    subsampling: str = "4:2:0"
    icc: str = "keep"
    exif: str = "strip"
    resampler: str = "pillow"
    source: str = "<recipe>"

    def __post_init__(self) -> None:
        # The parser checks what a file says; this catches a Recipe made or replaced in code.
        if self.resampler not in RESAMPLERS:
            raise RecipeError(
                f"unknown resampler {self.resampler!r} (expected one of: {', '.join(RESAMPLERS)})",
                file=self.source,
                path="resampler",
            )

    def replace(self, **changes: Any) -> Recipe:
        """A copy with some fields changed (command-line overrides), checked as a recipe file
        is: the change goes through the normalized form and back."""
        changed = dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})
        if changed == self:
            return changed
        try:
            checked = load_recipe(changed.to_dict(), name=self.source)
        except RecipeError as exc:  # its line is the normalized form's: named by path only
            raise RecipeError(exc.reason, file=self.source, path=exc.path) from None
        return dataclasses.replace(checked, source=self.source)

    def to_dict(self) -> dict[str, Any]:
        """The normalized recipe: every default filled in, in a canonical shape.

        `resampler` appears only when it isn't Pillow, so recipes from before it existed
        keep their sha256 (and their outputs resume).
        """
        extra = {} if self.resampler == "pillow" else {"resampler": self.resampler}
        return {
            "version": self.version,
            "seed": self.seed,
            "variants": self.variants,
            "balance": None
            if self.balance_target is None
            else {"target_per_class": self.balance_target},
            "include_originals": self.include_originals,
            "input": {"extensions": list(self.extensions), "max_pixels": self.max_pixels},
            "output": {
                "format": self.format,
                "quality": self.quality,
                "background": self.background,
                "compress_level": self.compress_level,
                "lossless": self.lossless,
                "subsampling": self.subsampling,
                "icc": self.icc,
                "exif": self.exif,
            },
            **extra,
            "pipeline": [_node_dict(n) for n in self.pipeline],
        }

    @property
    def sha256(self) -> str:
        """Hash of the canonical JSON of the normalized recipe."""
        canon = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()

    def to_yaml(self) -> str:
        """The normalized recipe as YAML."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)


def _node_dict(node: Node) -> dict[str, Any]:
    if isinstance(node, Step):
        return {node.op.name: {**node.config, "p": node.p}}
    body: dict[str, Any] = {"p": node.p}
    if node.kind == "some_of":
        body["n"] = list(node.n)
    body["steps"] = [_node_dict(c) for c in node.children]
    return {node.kind: body}


RecipeSource = str | Path | dict | Recipe


def load_recipe(source: RecipeSource, *, name: str | None = None) -> Recipe:
    """Load and validate a recipe from a path, YAML text (with `name`), or a dict."""
    if isinstance(source, Recipe):
        return source
    if isinstance(source, dict):
        try:
            text = yaml.safe_dump(source, sort_keys=False)
        except yaml.YAMLError as exc:  # a numpy number, a Path: not plain data
            raise RecipeError(
                f"a recipe dict holds only plain values (str, int, float, bool, list, dict, "
                f"None): {exc}",
                file=name or "<dict>",
            ) from None
        return parse_recipe(text, name or "<dict>")
    if name is not None:
        return parse_recipe(str(source), name)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError("no such file", file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"cannot read: {exc}", file=str(path)) from None
    return parse_recipe(text, str(path))


class _Loader(yaml.SafeLoader):
    """SafeLoader without aliases: `*name` can expand a few lines into gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.MarkedYAMLError(
                problem="YAML aliases (*name) are not supported in recipes; write the value out",
                problem_mark=event.start_mark,
            )
        return super().compose_node(parent, index)


def parse_recipe(text: str, name: str = "<recipe>") -> Recipe:
    """Parse YAML text into a Recipe; every error is a RecipeError naming where and what."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a control character in the text
        pos = exc.position
        line, col = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
        what = f"not valid YAML: {exc.reason} (character {exc.character!r})"
        raise RecipeError(what, file=name, line=line, column=col) from None
    try:
        return _Parser(name, loader).recipe(loader.get_single_node())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = exc.problem or str(exc)
        raise RecipeError(f"not valid YAML: {problem}", file=name, line=line, column=col) from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"not valid YAML: {exc}", file=name) from None
    finally:
        loader.dispose()


_TOP_KEYS = (
    "version",
    "seed",
    "variants",
    "balance",
    "include_originals",
    "input",
    "output",
    "resampler",
    "pipeline",
)
_INPUT_KEYS = ("extensions", "max_pixels")
_OUTPUT_KEYS = (
    "format",
    "quality",
    "background",
    "compress_level",
    "lossless",
    "subsampling",
    "icc",
    "exif",
)
SUBSAMPLING = ("4:4:4", "4:2:2", "4:2:0")
METADATA = ("keep", "strip")


class _Parser:
    """Walks the YAML node tree so that every error can name its line and step path."""

    def __init__(self, name: str, loader: yaml.SafeLoader) -> None:
        self.name = name
        self.loader = loader

    def fail(self, node: yaml.Node | None, path: str, message: str) -> RecipeError:
        mark = node.start_mark if node is not None else None
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        return RecipeError(message, file=self.name, line=line, column=col, path=path)

    def value(self, node: yaml.Node) -> Any:
        return self.loader.construct_object(node, deep=True)

    def mapping(
        self, node: yaml.Node, path: str, allowed: tuple[str, ...], what: str
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """The entries of a mapping node by key, refusing duplicates and unknown keys."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, path, f"expected a mapping of {what}, got {self.describe(node)}")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node)
            if not isinstance(key, str):
                raise self.fail(key_node, path, f"expected a {what} name, got {key!r}")
            if key in out:
                raise self.fail(key_node, path, f"'{key}' is given twice")
            if key not in allowed:
                hint = did_you_mean(key, allowed) or f" (expected one of: {', '.join(allowed)})"
                raise self.fail(key_node, path, f"unknown {what} '{key}'{hint}")
            out[key] = (key_node, value_node)
        return out

    def describe(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.MappingNode):
            return "a mapping"
        if isinstance(node, yaml.SequenceNode):
            return "a list"
        return repr(self.value(node))

    def integer(self, node: yaml.Node, path: str, lo: int, hi: float = math.inf) -> int:
        v = self.value(node)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            bound = f"an integer >= {lo}" if hi == math.inf else f"an integer in [{lo}, {hi}]"
            raise self.fail(node, path, f"expected {bound}, got {self.describe(node)}")
        return v

    def boolean(self, node: yaml.Node, path: str) -> bool:
        v = self.value(node)
        if not isinstance(v, bool):
            raise self.fail(node, path, f"expected true or false, got {self.describe(node)}")
        return v

    def choice(
        self, node: yaml.Node, path: str, value: Any, options: tuple[str, ...], what: str
    ) -> str:
        if value not in options:
            hint = did_you_mean(value, options) or f" (expected one of: {', '.join(options)})"
            raise self.fail(node, path, f"unknown {what} {value!r}{hint}")
        return value

    def probability(self, node: yaml.Node, path: str) -> float:
        v = self.value(node)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise self.fail(
                node, path, f"expected a probability in [0, 1], got {self.describe(node)}"
            )
        return float(v)

    # --- top level --------------------------------------------------------------

    def recipe(self, root: yaml.Node | None) -> Recipe:
        if root is None:
            raise RecipeError("the recipe is empty; it needs at least 'version: 1'", file=self.name)
        top = self.mapping(root, "", _TOP_KEYS, "key")
        if "version" not in top:
            raise self.fail(root, "", "missing required key 'version' (add 'version: 1')")
        fields: dict[str, Any] = {"source": self.name}
        vnode = top["version"][1]
        version = self.value(vnode)
        if type(version) is not int or version not in RECIPE_VERSIONS:
            supported = ", ".join(map(str, RECIPE_VERSIONS))
            raise self.fail(
                vnode, "version", f"unsupported recipe version {version!r} (supported: {supported})"
            )
        fields["version"] = version
        if "seed" in top:
            fields["seed"] = self.integer(top["seed"][1], "seed", 0, MAX_SEED)
        if "variants" in top:
            fields["variants"] = self.integer(top["variants"][1], "variants", 0, MAX_VARIANTS)
        if "balance" in top and self.value(top["balance"][1]) is not None:
            # The normalized form (run.json, `augctl validate`) lists the default beside it.
            if "variants" in top and fields["variants"] != Recipe.variants:
                raise self.fail(
                    top["balance"][0], "balance", "give either 'variants' or 'balance', not both"
                )
            bal = self.mapping(top["balance"][1], "balance", ("target_per_class",), "key")
            if "target_per_class" not in bal:
                raise self.fail(
                    top["balance"][1], "balance", "missing required key 'target_per_class'"
                )
            fields["balance_target"] = self.integer(
                bal["target_per_class"][1], "balance.target_per_class", 1, 10_000_000
            )
        if "include_originals" in top:
            fields["include_originals"] = self.boolean(
                top["include_originals"][1], "include_originals"
            )
        if "input" in top:
            fields.update(self.input(top["input"][1]))
        if "output" in top:
            fields.update(self.output(top["output"][1]))
        if "resampler" in top:
            fields["resampler"] = self.resampler(top["resampler"][1])
        if "pipeline" in top:
            fields["pipeline"] = self.steps(top["pipeline"][1], "pipeline")
        return Recipe(**fields)

    def resampler(self, node: yaml.Node) -> str:
        name = self.choice(node, "resampler", self.value(node), RESAMPLERS, "resampler")
        # find_spec, not an import: checking costs nothing, importing OpenCV a tenth of a second
        if name == "opencv" and importlib.util.find_spec("cv2") is None:
            raise self.fail(
                node,
                "resampler",
                "'opencv' needs OpenCV, not installed here: pip install 'augctl[opencv]'",
            )
        return name

    def input(self, node: yaml.Node) -> dict[str, Any]:
        entries = self.mapping(node, "input", _INPUT_KEYS, "input key")
        out: dict[str, Any] = {}
        if "extensions" in entries:
            enode = entries["extensions"][1]
            exts = self.value(enode)
            bad = (
                [e for e in exts if not (isinstance(e, str) and e.strip("."))]
                if isinstance(exts, list)
                else []
            )
            if not isinstance(exts, list) or not exts or bad:
                if bad:
                    got = f"a list holding {bad[0]!r}, which is not an extension"
                elif exts == []:
                    got = "an empty list"
                else:
                    got = self.describe(enode)
                raise self.fail(
                    enode, "input.extensions", f"expected a list like [.jpg, .png], got {got}"
                )
            norm = ["." + e.lower().lstrip(".") for e in exts]
            out["extensions"] = tuple(sorted(set(norm)))  # order carries no meaning
        if "max_pixels" in entries:
            out["max_pixels"] = self.integer(entries["max_pixels"][1], "input.max_pixels", 1)
        return out

    def output(self, node: yaml.Node) -> dict[str, Any]:
        entries = self.mapping(node, "output", _OUTPUT_KEYS, "output key")
        out: dict[str, Any] = {}
        if "format" in entries:
            fnode = entries["format"][1]
            fmt = "jpeg" if self.value(fnode) == "jpg" else self.value(fnode)
            out["format"] = self.choice(fnode, "output.format", fmt, FORMATS, "format")
        if "quality" in entries:
            out["quality"] = self.integer(entries["quality"][1], "output.quality", 1, 100)
        if "compress_level" in entries:
            node = entries["compress_level"][1]
            out["compress_level"] = self.integer(node, "output.compress_level", 0, 9)
        if "lossless" in entries:
            out["lossless"] = self.boolean(entries["lossless"][1], "output.lossless")
        for key, options in (("subsampling", SUBSAMPLING), ("icc", METADATA), ("exif", METADATA)):
            if key in entries:
                node = entries[key][1]
                out[key] = self.choice(node, f"output.{key}", self.value(node), options, key)
        if "background" in entries:
            bnode = entries["background"][1]
            try:
                out["background"] = Color(255).normalize(self.value(bnode))
            except ParamError as exc:
                raise self.fail(bnode, "output.background", str(exc)) from None
        return out

    # --- pipeline -------------------------------------------------------------

    def steps(self, node: yaml.Node, path: str) -> tuple[Node, ...]:
        if not isinstance(node, yaml.SequenceNode):
            if isinstance(node, yaml.ScalarNode) and self.value(node) is None:
                return ()
            raise self.fail(node, path, f"expected a list of steps, got {self.describe(node)}")
        return tuple(self.step(child, f"{path}[{i}]") for i, child in enumerate(node.value))

    def step(self, node: yaml.Node, path: str) -> Node:
        names = (*REGISTRY, *COMPOSE_KINDS)
        if isinstance(node, yaml.ScalarNode) and isinstance(self.value(node), str):
            key_node, body = node, None  # bare "- hflip": all defaults
        elif isinstance(node, yaml.MappingNode) and len(node.value) == 1:
            key_node, body = node.value[0]
        else:
            raise self.fail(
                node,
                path,
                "expected a step: a mapping with exactly one op name as key, "
                f"got {self.describe(node)}",
            )
        name = self.value(key_node)
        if name not in names:
            hint = did_you_mean(name, names) or "; run 'augctl ops' for the list"
            raise self.fail(key_node, path, f"unknown op '{name}'{hint}")
        if name in COMPOSE_KINDS:
            return self.compose(name, body, key_node, f"{path}.{name}")
        return self.op_step(name, body, key_node, f"{path}.{name}")

    def op_step(self, name: str, body: yaml.Node | None, key_node: yaml.Node, path: str) -> Step:
        op = REGISTRY[name]
        config = op.defaults()
        p = 1.0
        if body is not None and not (
            isinstance(body, yaml.ScalarNode) and self.value(body) is None
        ):
            allowed = (*op.params, "p")
            if not isinstance(body, yaml.MappingNode):
                raise self.fail(
                    body,
                    path,
                    f"expected a mapping of parameters (or nothing), got {self.describe(body)}",
                )
            for key, (_key_node, vnode) in self.mapping(
                body, path, allowed, f"{name} parameter"
            ).items():
                if key == "p":
                    p = self.probability(vnode, f"{path}.p")
                    continue
                try:
                    config[key] = op.params[key].normalize(self.value(vnode))
                except ParamError as exc:
                    raise self.fail(vnode, f"{path}.{key}", str(exc)) from None
        return Step(op=op, config=config, p=p)

    def compose(self, kind: str, body: yaml.Node | None, key_node: yaml.Node, path: str) -> Compose:
        if body is None or isinstance(body, yaml.SequenceNode):
            entries: dict[str, tuple[yaml.Node, yaml.Node]] = (
                {} if body is None else {"steps": (key_node, body)}
            )
        else:
            allowed = ("steps", "p", "n") if kind == "some_of" else ("steps", "p")
            entries = self.mapping(body, path, allowed, f"{kind} key")
        if "steps" not in entries:
            raise self.fail(
                body if body is not None else key_node, path, f"{kind} needs a list of steps"
            )
        children = self.steps(entries["steps"][1], path)
        if not children:
            raise self.fail(entries["steps"][1], path, f"{kind} needs at least one step")
        p = self.probability(entries["p"][1], f"{path}.p") if "p" in entries else 1.0
        n = (1, len(children))
        if "n" in entries:
            nnode = entries["n"][1]
            raw = self.value(nnode)
            vals = raw if isinstance(raw, list) else [raw, raw]
            ok = len(vals) == 2 and all(
                isinstance(v, int) and not isinstance(v, bool) for v in vals
            )
            if not ok or not 0 <= vals[0] <= vals[1] <= len(children):
                raise self.fail(
                    nnode,
                    f"{path}.n",
                    f"expected n or [lo, hi] with 0 <= lo <= hi <= {len(children)}, got {raw!r}",
                )
            n = (vals[0], vals[1])
        return Compose(kind=kind, children=children, p=p, n=n)
