"""The matching engine: candidates from hints, then structure, accepted only by numbers.

For every target layer that carries parameters, the :class:`Matcher`

1. collects *anchors*, source paths the target is probably about, cheapest first:
   its hints (tensor names, legacy scope paths, dynamo name scopes) resolved against the
   source's layer and module paths (:class:`~inspector.anchors.HintResolver`), then the
   source layer that sequence alignment of the two models puts at its place
   (:func:`~inspector.anchors.align`), then nearby source layers of the same kind and
   shape (a bounded search, not all pairs);
2. asks each transform, in order, for candidates around each anchor, checks them, and
   re-computes the target's parameters;
3. accepts the first candidate whose every parameter is within tolerance
   (:func:`compare`); otherwise keeps the closest one and reports a mismatch when the
   source is credible (named by a hint, or at most half the elements are off; for a
   constant that is not a weight layer's, named by a tensor name, or by its scope with
   at most half the elements off), and "unmatched" when not.

A name is never proof: the dynamo exporter keeps ``conv.weight`` on a tensor that holds
conv x BN, so a name only makes a candidate; the numbers decide.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from inspector import ir, progress
from inspector.anchors import SEARCH_LIMIT, HintResolver, align, settle_kinds, signature
from inspector.compare import (
    FAILED,
    Comparison,
    channel_errors,
    compare,
    default_tolerance,
    finite_range,
    screen_or_accept,
)
from inspector.coverage import Accounting, is_float
from inspector.ir import Layer, Model
from inspector.records import Finding
from inspector.results import MISMATCH, OK, UNMATCHED, DiffResult, LayerDiff, ParamDiff, Tolerance
from inspector.targets import prepare_targets
from inspector.transforms import GUESS, Candidate, Reproduction, SourceIndex, Transform

RECONCILE_LIMIT = 64
"""How many unused source layers a constant no name explains is tried against."""

KEEP_REPRODUCTION = 1 << 16
"""A candidate screened out (:func:`inspector.compare.screen`) keeps its reproduction for
the ranking when it holds at most this many elements; a larger one is re-computed if
the ranking is needed (a constant tried against 64 unused tables must not hold them all)."""

STRUCTURAL = frozenset({"name", "scope", "alignment", "search", "reconciled"})
"""How a candidate was found when its fitting the target says the target is a parameter
(a candidate found only by equal values says nothing when its values differ)."""


# ----------------------------------------------------------------------------- matcher


@dataclass(slots=True)
class _Screened:
    """A candidate :func:`~inspector.compare.screen` showed not to fit: compared in full
    only if no candidate fits and the closest must be named."""

    candidate: Candidate
    transform: Transform
    matched_by: str
    reproduction: Reproduction | None


@dataclass(slots=True)
class _Attempt:
    candidate: Candidate
    transform: Transform
    reproduction: Reproduction
    comparisons: dict[str, tuple[Comparison, Tolerance]]
    matched_by: str
    approximate: bool = False

    @property
    def located(self) -> bool:
        """Whether every comparison lists its bad channels (see ``compare(locate=...)``)."""
        return all(comparison.located for comparison, _ in self.comparisons.values())

    @property
    def ok(self) -> bool:
        return not self.approximate and all(comparison.ok for comparison, _ in self.comparisons.values())

    @property
    def violation(self) -> float:
        return max((c.violation for c, _ in self.comparisons.values()), default=0.0)

    @property
    def bad_fraction(self) -> float:
        return max((c.bad_fraction for c, _ in self.comparisons.values()), default=0.0)


class Matcher:
    """Matches one target model against one source model with the given transforms."""

    def __init__(
        self,
        transforms: list[Transform],
        source: Model,
        target: Model,
        rtol: float | None = None,
        atol: float | None = None,
    ) -> None:
        self.transforms = transforms
        self.source_model = source
        self.target_model = target
        self.source = SourceIndex(source)
        self.resolver = HintResolver(self.source)
        settled = settle_kinds(self.source, self.resolver, target)
        if settled:
            self.source = SourceIndex(source, settled)
            self.resolver = HintResolver(self.source)
        self.rtol = rtol
        self.atol = atol
        self._aligned: dict[str, Layer] | None = None
        self._targets, self._others = prepare_targets(target)
        self.transform_errors: dict[str, tuple[str, str]] = {}
        """Transform name -> (first target layer, error) for transforms that raised."""
        self.used: set[str] = set()
        """Source layers some target layer came from, so far."""
        self._uses: dict[str, list[tuple[str, str]]] = {}
        self._unused_roles: dict[str, set[str]] = {}
        """Source layer name -> the roles of its float parameters (more than a scalar)
        nothing used yet; only layers that have some."""
        for layer in self.source.layers:
            roles = {role for role, param in layer.params.items() if _is_float_tensor(param)}
            if roles:
                self._unused_roles[layer.name] = roles
        self._unused = {layer.name: layer for layer in self.source.layers if layer.name in self._unused_roles}
        """The source layers holding a float parameter nothing used yet, in order."""
        self._by_signature: dict[tuple | None, list[Layer]] | None = None
        self._by_kind: dict[str, list[Layer]] = {}
        self._by_numel: dict[int, list[Layer]] | None = None
        self.accounting = Accounting()
        self._tolerances: dict[frozenset[str], Tolerance] = {}
        self._last_guess: dict[str, str] = {}
        """Transform name -> the variant of its last accepted guess (see :meth:`guesses_first`)."""
        self._guessed: list[tuple[LayerDiff, Transform, Layer, str]] = []
        """Each layer a guess explained: its diff, the transform, the target and the anchor
        (see :meth:`_settle_guesses`)."""
        self._order_by_op: dict[str, list[Transform]] = {}
        """Op type -> the transforms in the order its layers try them (see :meth:`transforms_for`)."""

    # -- public ---------------------------------------------------------------------

    def run(self) -> DiffResult:
        """Explain every target layer, then account for every stored number."""
        result = DiffResult(self.source_model, self.target_model)
        result.transform_phrases = {t.name: t.phrase or t.name for t in self.transforms}
        result.transform_explains = {t.name: t.explains for t in self.transforms if t.explains}
        with progress.step("Matching layers", total=len(self._targets) + len(self._others)) as step:
            for layer in self._targets:
                diff = self.explain(layer, must_explain=True)
                self._keep(result, diff)
                _release(layer)
                self._release_sources(diff)
                step.advance()
            self._settle_guesses(result)
            # Other constants: first by their names, then (once every named one has taken
            # its source) against the parameters still unused, then by equal values.
            leftovers: list[tuple[Layer, bool]] = []
            for layer in self._others:
                diff, derivable = self._explain(layer, must_explain=False)
                if diff.status == UNMATCHED:
                    leftovers.append((layer, derivable))
                else:
                    self._keep(result, diff)
                    self._release_sources(diff)
                _release(layer)
                step.advance()
        for layer, derivable in leftovers:
            self._settle(result, layer, derivable)
            _release(layer)
        position = {layer.name: layer.index for layer in self.target_model.layers}
        result.layers.sort(key=lambda item: position[item.target])
        result.unmatched_source = [
            layer.name for layer in self.source.layers if layer.name not in self.used and _has_weights(layer)
        ]
        for name, (layer, error) in self.transform_errors.items():
            result.findings.append(
                Finding(
                    "warning",
                    "transform_error",
                    f"the {name} transform raised {error} (first on {layer}); it was skipped where it failed",
                    layer,
                )
            )
        result.coverage, result.constants = self.accounting.account(self.target_model)
        return result

    def _settle_guesses(self, result: DiffResult) -> None:
        """Where a guess was taken for a layer that the guess most of the model's layers
        took fits as well, report that one: a model shares one such setting (one
        BatchNorm eps), but its first layers are explained before the model has shown
        which, and in float16 both eps often fit them. Each such layer is re-computed
        with the majority's variant over the same source layers; it replaces the
        layer's diff only when it reproduces the layer (the comparison is counted once)."""
        taken = Counter((transform.name, diff.variant) for diff, transform, _, _ in self._guessed)
        majority: dict[str, str] = {}
        for (name, variant), _ in taken.most_common():  # the most taken first; a tie keeps the first taken
            majority.setdefault(name, variant)
        settling = [entry for entry in self._guessed if entry[0].variant != majority[entry[1].name]]
        position = {id(diff): index for index, diff in enumerate(result.layers)} if settling else {}
        for diff, transform, target, anchor in settling:
            if id(diff) not in position:
                continue
            try:
                settled = self._settled(diff, transform, target, anchor, majority[transform.name])
            except Exception:  # noqa: BLE001 - as in _explain; the diff as it was stands
                settled = None
            if settled is not None:
                result.layers[position[id(diff)]] = settled
            _release(target)
            self._release_sources(diff)
        self._guessed.clear()

    def _settled(
        self, diff: LayerDiff, transform: Transform, target: Layer, anchor: str, variant: str
    ) -> LayerDiff | None:
        """``target``'s diff with the ``variant`` of the guess over ``diff``'s sources,
        or None when that does not reproduce it."""
        for candidate in transform.propose(target, anchor, self.source):
            if candidate.variant == variant and candidate.names == diff.sources:
                outcome = self._try(target, transform, candidate, diff.matched_by)
                if isinstance(outcome, _Attempt) and outcome.ok:
                    return self._layer_diff(target, outcome, OK, counted=False)
                return None
        return None

    def _try(
        self, target: Layer, transform: Transform, candidate: Candidate, matched_by: str
    ) -> str | _Attempt | _Screened:
        """One candidate for ``target``: the reason ``transform.check`` refuses it; or,
        re-computed, the :class:`_Screened` the screen rejects (its reproduction kept
        when small), or the :class:`_Attempt` compared with the target."""
        reason = transform.check(target, candidate)
        if reason is not None:
            return reason
        reproduction = transform.reproduce(target, candidate)
        accepted = self._fits(target, candidate, reproduction)
        if accepted is None:
            kept = reproduction if _elements(reproduction) <= KEEP_REPRODUCTION else None
            return _Screened(candidate, transform, matched_by, kept)
        return self._attempt(target, transform, candidate, matched_by, reproduction, accepted)

    def explain(self, target: Layer, must_explain: bool = True) -> LayerDiff:
        """Find and verify the source of one target layer."""
        return self._explain(target, must_explain)[0]

    def _keep(self, result: DiffResult, diff: LayerDiff) -> None:
        result.layers.append(diff)
        self.used.update(diff.sources)
        for name, role in self._uses.pop(diff.target, ()):
            roles = self._unused_roles.get(name)
            if roles is not None:
                roles.discard(role)
                if not roles:
                    del self._unused_roles[name]
                    self._unused.pop(name, None)

    def _release_sources(self, diff: LayerDiff) -> None:
        """Drop the values of the source layers a finished target layer read: another
        layer that needs them reads them again (a view of a mapped file costs
        microseconds), and the checkpoint's pages need not stay resident for it."""
        for name in diff.sources:
            layer = self.source.layer(name)
            if layer is not None:
                _release(layer)

    def _unused_floats(self, layer: Layer) -> bool:
        """Whether ``layer`` holds a float parameter (more than a scalar) nothing used."""
        return layer.name in self._unused_roles

    def _settle(self, result: DiffResult, layer: Layer, derivable: bool) -> None:
        """A constant no name explains: reconciled with a source parameter left unused
        (a changed parameter is then a mismatch, not a lost one), found equal to a source
        tensor (a parameter used twice), or else shown to be computed at export."""
        diff, reconciled = self._explain(layer, False, self._anchors_by_position(layer, unused=True))
        if diff.status != UNMATCHED:
            return self._keep(result, diff)
        equal, _ = self._explain(layer, False, self._anchors_by_position(layer, unused=False), only_ok=True)
        if equal.status == OK:
            return self._keep(result, equal)
        if derivable or reconciled or self._scope_has_unused_parameters(layer):
            # A source parameter fits it and its values do not, or the module it belongs
            # to holds a parameter nothing explains: parameter-derived and not
            # reproduced, never a constant.
            result.layers.append(diff)
            return
        for param in layer.params.values():
            if _is_float_tensor(param):
                self.accounting.computed_at_export(
                    param,
                    layer,
                    "computed at export: no PyTorch tensor holds these values and no unused "
                    "PyTorch parameter can be turned into them",
                )

    def _explain(
        self,
        target: Layer,
        must_explain: bool = True,
        anchors: list[tuple[str, str]] | None = None,
        only_ok: bool = False,
    ) -> tuple[LayerDiff, bool]:
        """(the layer's diff, whether some source fits it structurally but not in value).

        ``anchors`` replaces the usual ones (:meth:`anchors`); ``only_ok`` accepts a
        candidate only when it reproduces the layer (never as a mismatch)."""
        failed: list[_Attempt | _Screened] = []
        derivable = False
        reasons: list[str] = []
        tried: set[tuple[str, tuple[str, ...], str]] = set()
        found = anchors if anchors is not None else self.anchors(target, searching=must_explain)
        for anchor, matched_by in found:
            for transform in self.transforms_for(target):
                if transform.target_kinds and target.kind not in transform.target_kinds:
                    continue
                try:
                    for candidate in self.guesses_first(transform, transform.propose(target, anchor, self.source)):
                        key = (transform.name, tuple(candidate.names), candidate.variant)
                        if key in tried:
                            continue
                        tried.add(key)
                        outcome = self._try(target, transform, candidate, matched_by)
                        if isinstance(outcome, str):
                            reasons.append(f"{transform.name}({' + '.join(candidate.names)}): {outcome}")
                            continue
                        if isinstance(outcome, _Attempt) and outcome.ok:
                            self._prefer(target, transform)
                            diff = self._layer_diff(target, outcome, OK)
                            if candidate.get(GUESS):
                                self._last_guess[transform.name] = candidate.variant
                                self._guessed.append((diff, transform, target, anchor))
                            return diff, derivable
                        failed.append(outcome)
                        derivable = derivable or (
                            matched_by in STRUCTURAL and transform.proves_origin and not candidate.get("weak")
                        )
                except Exception as exc:  # noqa: BLE001 - one broken transform must not end the diff
                    error = f"{type(exc).__name__}: {exc}".splitlines()[0]
                    self.transform_errors.setdefault(transform.name, (target.name, error))
                    reasons.append(f"{transform.name} failed: {error}")
        # Nothing fits. The closest candidate (the first of the least violation) is named
        # in the reasons or reported as a mismatch; screened-out candidates are compared
        # now, as the others were, for that ranking alone.
        best: _Attempt | None = None
        for item in failed if not only_ok else ():
            attempt = item if isinstance(item, _Attempt) else self._compare_screened(target, item, reasons)
            if attempt is not None and (best is None or attempt.violation < best.violation):
                best = attempt
        # A weight layer must come from somewhere: its closest candidate is credible when
        # named or mostly right. Another constant may be made at export (a position
        # table that happens to have a parameter's size): credible when named, or found
        # in the module's scope (or as the one unused parameter that fits) and mostly right.
        credible = (
            not only_ok
            and best is not None
            and (
                best.matched_by == "name"
                or (must_explain and best.matched_by == "scope")
                or ((must_explain or best.matched_by in ("scope", "reconciled")) and best.bad_fraction <= 0.5)
            )
        )
        if credible:
            if best.approximate or not best.located:
                best = self._attempt(
                    target, best.transform, best.candidate, best.matched_by, best.reproduction, full=True
                )
                if best.ok:  # cannot happen (a failed probe is a real difference); be safe
                    return self._layer_diff(target, best, OK), derivable
            return self._layer_diff(target, best, MISMATCH), derivable
        diff = self._unmatched(target)
        if best is not None:
            reasons.insert(
                0,
                f"closest: {best.transform.name}({' + '.join(best.candidate.names)}) differs in "
                f"{best.bad_fraction:.0%} of the elements",
            )
        diff.reasons = reasons[:10]
        return diff, derivable

    def transforms_for(self, target: Layer) -> list[Transform]:
        """The transforms in the order ``target`` tries them: their own order, but the one
        that explained the last layer of its op type first. An export treats the layers
        of an op type alike (every Conv with its BatchNorm folded, or none), so after the
        first one a folded Conv no longer re-computes and rejects the unfolded weight
        before its fold. Only the order changes: a transform is still accepted only by
        its values, and where two fit (a BatchNorm that changes nothing), the one the
        model's other layers of that op type took is reported."""
        return self._order_by_op.get(target.op_type, self.transforms)

    def _prefer(self, target: Layer, transform: Transform) -> None:
        order = self._order_by_op.get(target.op_type, self.transforms)
        if order[0] is not transform:
            self._order_by_op[target.op_type] = [transform, *(t for t in self.transforms if t is not transform)]

    def guesses_first(self, transform: Transform, candidates: Iterable[Candidate]) -> Iterable[Candidate]:
        """``candidates`` in order, but among guesses over the same layers (see
        :data:`~inspector.transforms.GUESS`) the variant of the transform's last accepted
        guess first. A model shares one such setting (one eps for its BatchNorms), so
        after the first layer the wrong guess is no longer tried before the right one
        on every layer. Only the order changes: a guess is still accepted only by its
        values, and where two guesses both fit, the one the model's other layers took
        is reported."""
        preferred = self._last_guess.get(transform.name)
        return candidates if preferred is None else _guesses_first(candidates, preferred)

    def _scope_has_unused_parameters(self, target: Layer) -> bool:
        """Whether a module the target's names point to holds a float parameter no layer
        has used (a bias table whose index buffer a state_dict does not keep)."""
        for hint in target.hints:
            for path in self.resolver.resolve(hint)[0]:
                layer = self.source.layer(path)  # the module itself, not its children: a
                # decoder's scope also holds training-only heads no export uses
                if layer is not None and self._unused_floats(layer):
                    return True
        return False

    def _anchors_by_position(self, target: Layer, unused: bool) -> list[tuple[str, str]]:
        """Source layers nearest ``target``'s relative position first: those no layer has
        used yet (``unused``, any shape: a transform may broadcast, slice or gather), or
        any holding a tensor of one of the target's sizes."""
        relative = target.index / max(len(self.target_model.layers), 1)
        if unused:
            layers: Iterable[Layer] = self._unused.values()
        else:
            if self._by_numel is None:
                self._by_numel = {}
                for layer in self.source.layers:
                    for numel in dict.fromkeys(param.numel for param in layer.params.values()):
                        self._by_numel.setdefault(numel, []).append(layer)
            sizes = {param.numel for param in target.params.values()}
            layers = {id(layer): layer for size in sizes for layer in self._by_numel.get(size, ())}.values()
        found = []
        for layer in layers:
            distance = abs(self.source.position(layer) / max(len(self.source.layers), 1) - relative)
            found.append((distance, layer.name))
        found.sort()
        limit = RECONCILE_LIMIT if unused else SEARCH_LIMIT * 2
        how = "reconciled" if unused else "values"
        return [(name, how) for _, name in found[:limit]]

    def anchors(self, target: Layer, searching: bool = True) -> Iterable[tuple[str, str]]:
        """Source paths to try for ``target``, strongest first, each with how it was found.

        A path named by several hints is tried once, as found by the strongest of them: a
        dynamo node's scope names the module, and its initializer's name names it too
        (``cross.in_proj_weight``), which makes a difference credible (a "name").
        """
        found: dict[str, str] = {}
        for hint in target.hints:
            paths, how = self.resolver.resolve(hint)
            for path in paths:
                if found.get(path) != "name":
                    found[path] = how
        yield from found.items()
        seen = set(found)
        aligned = self.aligned().get(target.name)
        if aligned is not None and aligned.name not in seen:
            seen.add(aligned.name)
            yield aligned.name, "alignment"
        if searching:
            for layer in self._search(target):
                if layer.name not in seen:
                    seen.add(layer.name)
                    yield layer.name, "search"

    def aligned(self) -> dict[str, Layer]:
        if self._aligned is None:
            self._aligned = align(self.source.layers, self._targets)
        return self._aligned

    # -- internals --------------------------------------------------------------------

    def _search(self, target: Layer) -> list[Layer]:
        """Source layers of the target's kind with a same-shaped weight, nearest in relative
        position first (bounded: this is the fallback when names and alignment fail)."""
        wanted = signature(target)
        shapes = {p.shape for p in target.params.values()}
        relative = target.index / max(len(self.target_model.layers), 1)
        if self._by_signature is None:  # indexed once: a search per target must not scan the model
            self._by_signature, self._by_kind = {}, {}
            for layer in self.source.layers:
                self._by_signature.setdefault(signature(layer), []).append(layer)
                self._by_kind.setdefault(layer.kind, []).append(layer)
        found = []
        if wanted is not None:
            layers = self._by_signature.get(wanted, [])
        else:  # a recurrent node stacks its directions: no shape in common, few of them
            layers = [
                layer
                for layer in self._by_kind.get(target.kind, [])
                if target.kind == ir.RECURRENT or shapes & {p.shape for p in layer.params.values()}
            ]
        for layer in layers:
            distance = abs(self.source.position(layer) / max(len(self.source.layers), 1) - relative)
            found.append((distance, layer))
        found.sort(key=lambda item: item[0])
        return [layer for _, layer in found[:SEARCH_LIMIT]]

    def _fits(self, target: Layer, candidate: Candidate, reproduction: Reproduction) -> dict[str, Comparison] | None:
        """None when :meth:`_attempt` is sure to fail: a parameter it would compare is
        screened out (:func:`~inspector.compare.screen`), or cannot be compared at all.
        Rejecting a candidate then costs a few microseconds instead of a comparison.
        Otherwise the comparisons already made, by role: a small parameter within the
        floor of its tolerance is compared in full by the screen
        (:func:`~inspector.compare.screen_or_accept`), and :meth:`_attempt` keeps that."""
        source_dtypes = None
        accepted: dict[str, Comparison] = {}
        for role in dict.fromkeys([*target.params, *reproduction.params]):
            target_param = target.params.get(role)
            expected = reproduction.params.get(role)
            if target_param is None and role != "bias":
                continue
            if target_param is not None and expected is None and not is_float(target_param):
                continue
            if expected is None or target_param is None:
                continue  # a missing bias is compared with zeros: left to the comparison
            if target_param.numel != expected.size:
                return None
            if source_dtypes is None:
                source_dtypes = {p.dtype for layer in candidate.sources for p in layer.params.values()}
            tolerance = self._tolerance(source_dtypes | {target_param.dtype})
            outcome = screen_or_accept(target_param.array(), expected, tolerance)
            if outcome is False:
                return None
            if outcome is not True:
                accepted[role] = outcome
        return accepted

    def _compare_screened(self, target: Layer, screened: _Screened, reasons: list[str]) -> _Attempt | None:
        """The attempt of a screened-out candidate, as :meth:`_attempt` makes any other
        (None, with the reason, if re-computing it fails)."""
        transform = screened.transform
        try:
            reproduction = screened.reproduction
            if reproduction is None:
                reproduction = transform.reproduce(target, screened.candidate)
            return self._attempt(target, transform, screened.candidate, screened.matched_by, reproduction)
        except Exception as exc:  # noqa: BLE001 - as in _explain: one broken transform must not end the diff
            error = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.transform_errors.setdefault(transform.name, (target.name, error))
            reasons.append(f"{transform.name} failed: {error}")
            return None

    def _attempt(
        self,
        target: Layer,
        transform: Transform,
        candidate: Candidate,
        matched_by: str,
        reproduction: Reproduction,
        accepted: dict[str, Comparison] | None = None,
        full: bool = False,
    ) -> _Attempt:
        """Compare ``reproduction`` with the target. Unless ``full``, a parameter whose
        probe fails ends the attempt early (its comparison then covers the probe only,
        ``approximate``) and bad channels are not listed (only the reported attempt needs
        them: ``located``). ``accepted``: comparisons :meth:`_fits` already made (each is
        what :func:`~inspector.compare.compare` returns for a parameter it accepts)."""
        comparisons: dict[str, tuple[Comparison, Tolerance]] = {}
        source_dtypes = {p.dtype for layer in candidate.sources for p in layer.params.values()}
        roles = list(dict.fromkeys([*target.params, *reproduction.params]))
        approximate = False
        for role in roles:
            target_param = target.params.get(role)
            expected = reproduction.params.get(role)
            if target_param is None and role != "bias":
                continue  # a transform may reproduce more than this layer stores
            if target_param is not None and expected is None and not is_float(target_param):
                continue  # an index or shape input (LeViT's Gather indices): no parameter
            tolerance = self._tolerance(source_dtypes | ({target_param.dtype} if target_param else set()))
            actual = target_param.array() if target_param is not None else np.zeros_like(expected)
            if expected is None:
                if role != "bias":
                    comparisons[role] = (FAILED, tolerance)
                    continue
                expected = np.zeros(actual.shape, dtype=np.float64)
            if actual.size != expected.size:
                comparisons[role] = (
                    Comparison(False, np.inf, np.inf, 1.0, np.inf, [], finite_range(expected)),
                    tolerance,
                )
                continue
            if accepted and role in accepted:
                comparisons[role] = (accepted[role], tolerance)
                continue
            comparison = compare(
                actual,
                expected,
                tolerance,
                reproduction.channel_axes.get(role, 0),
                probe_first=not full,
                groups=reproduction.channel_groups.get(role, 1),
                locate=full,
            )
            comparisons[role] = (comparison, tolerance)
            if comparison.approximate:
                approximate = True
                break
        return _Attempt(candidate, transform, reproduction, comparisons, matched_by, approximate)

    def _tolerance(self, dtypes: set[str]) -> Tolerance:
        key = frozenset(dtypes)
        tolerance = self._tolerances.get(key)
        if tolerance is None:  # a handful of dtype sets per model, asked for every parameter
            default = default_tolerance(dtypes)
            tolerance = self._tolerances[key] = Tolerance(
                self.rtol if self.rtol is not None else default.rtol,
                self.atol if self.atol is not None else default.atol,
                atol_follows_scale=self.atol is None,
            )
        return tolerance

    def _layer_diff(self, target: Layer, attempt: _Attempt, status: str, counted: bool = True) -> LayerDiff:
        """The diff of ``target`` as ``attempt`` explains it; its compared parameters are
        counted as explained (:class:`~inspector.coverage.Accounting`) unless ``counted``
        is False (a diff made again for a layer already counted)."""
        self._uses[target.name] = attempt.transform.used_params(attempt.candidate)
        diff = LayerDiff(
            target=target.name,
            op=target.op_type,
            kind=target.kind,
            sources=attempt.candidate.names,
            transform=attempt.transform.name,
            status=status,
            matched_by=attempt.matched_by,
            note=attempt.reproduction.note,
            variant=attempt.candidate.variant,
            facts=dict(attempt.reproduction.facts),
        )
        _keep_ranges(
            [target.params.get(role) for role in attempt.comparisons]
            + [attempt.reproduction.origins.get(role) for role in attempt.comparisons]
        )
        for role, (comparison, tolerance) in attempt.comparisons.items():
            target_param = target.params.get(role)
            if target_param is not None and counted:
                self.accounting.compared(target_param, target.op_type)
            origin = attempt.reproduction.origins.get(role)
            errors = None
            if not comparison.ok:
                expected = attempt.reproduction.params.get(role)
                actual = target_param.array() if target_param is not None else None
                errors = channel_errors(
                    actual,
                    expected,
                    attempt.reproduction.channel_axes.get(role, 0),
                    attempt.reproduction.channel_groups.get(role, 1),
                )
            diff.params.append(
                ParamDiff(
                    name=role,
                    target_tensor=target_param.tensor_name if target_param is not None else "(absent: zero)",
                    source_tensor=origin.tensor_name if origin is not None else None,
                    source_range=origin.value_range().range if origin is not None else None,
                    target_range=target_param.value_range().range if target_param is not None else (0.0, 0.0),
                    reproduced_range=comparison.expected_range,
                    max_abs_err=comparison.max_abs_err,
                    max_rel_err=comparison.max_rel_err,
                    status=OK if comparison.ok else MISMATCH,
                    bad_channels=comparison.bad_channels,
                    bad_channel_count=len(comparison.bad_channels),
                    channel_axis=attempt.reproduction.channel_axes.get(role, 0),
                    tolerance=tolerance,
                    channel_errors=errors,
                )
            )
        return diff

    def _unmatched(self, target: Layer) -> LayerDiff:
        diff = LayerDiff(target=target.name, op=target.op_type, kind=target.kind)
        for role, param in target.params.items():
            diff.params.append(
                ParamDiff(name=role, target_tensor=param.tensor_name, target_range=param.value_range().range)
            )
        return diff


RANGES_TOGETHER = 1 << 16
"""Largest tensor whose range :func:`_keep_ranges` computes together with others."""


def _keep_ranges(params: list[ir.Param | None]) -> None:
    """Compute the value ranges a layer's report shows (its parameters and their source
    parameters) in one numpy pass over the small float tensors among them, and keep them
    on the params: a range each is a dozen numpy calls, whatever the size.

    A range is kept only when it is what :meth:`~inspector.ir.ValueRange.of` gives: its
    min and max are finite (no NaN or Inf to count) and not zero (a min of 0.0 and -0.0
    may be either, depending on the order of the comparisons); the others are left to
    :meth:`~inspector.ir.Param.value_range`."""
    pending = {
        id(param): param
        for param in params
        if param is not None
        and param.dtype in ("float16", "float32", "float64")
        and 0 < param.numel <= RANGES_TOGETHER
        and param.known_range() is None
    }
    if len(pending) < 2:
        return
    kept, arrays, starts, start = [], [], [], 0
    for param in pending.values():
        array = param.array()
        if array.dtype.char in "efd":
            kept.append(param)
            arrays.append(array.reshape(-1))
            starts.append(start)
            start += array.size
    if len(kept) < 2:
        return
    values = np.concatenate(arrays)
    lows = np.minimum.reduceat(values, starts).tolist()
    highs = np.maximum.reduceat(values, starts).tolist()
    for param, low, high in zip(kept, lows, highs):
        if math.isfinite(low) and math.isfinite(high) and low != 0.0 and high != 0.0:
            param.keep_range(ir.ValueRange(low, high, 0, 0))


def _guesses_first(candidates: Iterable[Candidate], preferred: str) -> Iterable[Candidate]:
    held: list[Candidate] = []  # consecutive guesses over the same layers
    for candidate in candidates:
        guess = candidate.get(GUESS)
        if held and (not guess or candidate.sources != held[0].sources):
            yield from _preferred_variant_first(held, preferred)
            held = []
        if guess:
            held.append(candidate)
        else:
            yield candidate
    yield from _preferred_variant_first(held, preferred)


def _preferred_variant_first(candidates: list[Candidate], variant: str) -> list[Candidate]:
    """``candidates`` with the first of the given ``variant`` moved to the front."""
    for position, candidate in enumerate(candidates):
        if candidate.variant == variant:
            return [candidate, *candidates[:position], *candidates[position + 1 :]]
    return candidates


def _elements(reproduction: Reproduction) -> int:
    return sum(int(np.size(array)) for array in reproduction.params.values())


def _release(layer: Layer) -> None:
    """Drop a finished layer's values (their ranges stay): an ONNX file's tensors are
    copies out of the protobuf, so keeping them all would hold the model twice."""
    for param in layer.params.values():
        param.release()


def _is_float_tensor(param: ir.Param) -> bool:
    """A float parameter of more than one element (what an export must keep)."""
    return param.numel > 1 and param.dtype.startswith(("float", "bfloat"))


def _has_weights(layer: Layer) -> bool:
    """Whether a source layer holds anything an export would need (not just counters)."""
    return any(param.name != "num_batches_tracked" for param in layer.params.values())
