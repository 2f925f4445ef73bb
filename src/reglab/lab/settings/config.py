"""One grid point's settings, parsed once: :class:`TrialConfig`.

A trial config is built from a *concrete* table — study defaults merged with one grid entry,
sweep axes already replaced by values (:mod:`reglab.lab.settings.grid`). Every value is
validated here, each table by the class that owns it:

* ``[data]``: :class:`~reglab.lab.settings.data.DataConfig`
* ``[model]``: the table class of the kind it names, asked of the kind registry
  (:mod:`reglab.lab.settings.registry`; the kinds live in :mod:`reglab.lab.kinds`, one
  module each, and this module imports none of them)
* ``[train]``, ``norm_bound`` and ``schedules``: :mod:`reglab.lab.settings.train`
* the techniques (``label_smoothing``, ..., ``ensemble``): :mod:`reglab.lab.settings.techniques`
* ``rules``: :class:`Rules`, checked against the model's module names (built on the meta
  device, so no memory is used) before any trial exists.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from reglab import constraints, penalties
from reglab._validation import InvalidParameterError
from reglab.lab.settings import registry
from reglab.lab.settings.data import DataConfig
from reglab.lab.settings.schema import (
    StudyError,
    Table,
    check_keys,
    choice,
    fail,
    key_path,
    number,
    section_base,
    section_path,
)
from reglab.lab.settings.techniques import (
    AugmentConfig,
    ConfidencePenaltyConfig,
    EarlyStoppingConfig,
    EnsembleConfig,
    InputGradientConfig,
    LabelSmoothingConfig,
    LayerDecayConfig,
    MixConfig,
    MultiTaskConfig,
    PostHocConfig,
    PretrainConfig,
    PruneConfig,
    RDropConfig,
    SamConfig,
    SemiSupervisedConfig,
)
from reglab.lab.settings.train import NormBoundConfig, ScheduleConfig, TrainConfig
from reglab.regularization.rules import REDUCTIONS
from reglab.regularization.rules import RULE_KEYS as _ATTACH_RULE_KEYS

__all__ = ["LEVELS", "RULE_KEYS", "TECHNIQUES", "ModelConfig", "TrialConfig", "parse_model"]

#: A ``[model]`` table: an instance of some registered kind's table class
#: (:mod:`reglab.lab.settings.registry`).
ModelConfig = Table


def model_kinds() -> dict[str, type[Table]]:
    """Every registered kind's ``[model]`` table class, by ``kind`` name."""
    return {name: kind.model for name, kind in registry.kinds().items()}


def model_keys() -> list[str]:
    """Every key some model kind takes (what ``[model]`` may contain)."""
    return sorted({"kind", *(key for cls in model_kinds().values() for key in cls.keys())})  # noqa: SIM118


def __getattr__(name: str) -> Any:
    # MODEL_KINDS / MODEL_KEYS were module constants; the registry is filled on first use.
    if name == "MODEL_KINDS":
        return model_kinds()
    if name == "MODEL_KEYS":
        return model_keys()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Grid keys that configure one technique each, and the table that parses them.
TECHNIQUES: dict[str, Any] = {
    "label_smoothing": LabelSmoothingConfig,
    "augment": AugmentConfig,
    "mix": MixConfig,
    "early_stopping": EarlyStoppingConfig,
    "ensemble": EnsembleConfig,
    "norm_bound": NormBoundConfig,
    "pretrain": PretrainConfig,
    "semi_supervised": SemiSupervisedConfig,
    "multitask": MultiTaskConfig,
    "post_hoc_stopping": PostHocConfig,
    "sam": SamConfig,
    "rdrop": RDropConfig,
    "confidence_penalty": ConfidencePenaltyConfig,
    "prune": PruneConfig,
    "input_gradient": InputGradientConfig,
    "layer_decay": LayerDecayConfig,
}
#: Techniques that replace or wrap the classifier's loss: the shared models (semi-supervised,
#: multi-task) and bagged members have their own.
LOSS_TECHNIQUES = ("rdrop", "confidence_penalty", "input_gradient")
#: Grid keys only the classifier runner (and bagging) reads: on another family's point they
#: would be ignored, so they are refused.
CLASSIFIER_ONLY = (
    "label_smoothing",
    "augment",
    "mix",
    "early_stopping",
    "post_hoc_stopping",
    "ensemble",
    "input_noise",
    "weight_noise",
    *LOSS_TECHNIQUES,
    "prune",
)
#: Grid keys that are a number each (0: off).
LEVELS = {"input_noise": number(0.0), "weight_noise": number(0.0), "proximal_l1": number(0.0)}
#: The keys of one rule (``rules."glob".<key>``): what :func:`reglab.attach` takes.
RULE_KEYS = tuple(sorted(_ATTACH_RULE_KEYS))


def parse_model(raw: Any, path: str, origins: Mapping[str, str] | None = None) -> ModelConfig:
    """``[model]``: its ``kind`` picks the table; keys of other kinds are refused."""
    raw = dict(raw or {})
    origins = origins or {}
    check_keys(key_path(path, origins), raw, model_keys())
    tables = model_kinds()
    kind = choice(*tables)(f"{origins.get('kind', path)}.kind", raw.pop("kind", "mlp"))
    cls = tables[kind]
    for key in sorted(set(raw) - set(cls.keys())):
        if "kind" in origins and key not in origins:
            # The entry switched kind: the study-level settings of the other kind stay there.
            del raw[key]
            continue
        raise fail(
            f"{origins.get(key, path)}.{key}", f"does not apply to model.kind = {kind!r}", raw[key]
        )
    return cls.parse(raw, path, origins)  # type: ignore[return-value]


def _schedules(path: str, value: Any) -> tuple[ScheduleConfig, ...]:
    if not isinstance(value, (list, tuple)):
        raise fail(path, "expected a list of { target, schedule, attribute, per } tables", value)
    return tuple(ScheduleConfig.parse(entry, f"{path}[{i}]") for i, entry in enumerate(value))


def _rules(path: str, value: Any) -> tuple[tuple[str, dict[str, Any]], ...]:
    """Validate ``rules`` (glob -> rule); identifiers stay data (they are built per trial)."""
    if not isinstance(value, Mapping):
        raise fail(path, "expected a table of glob pattern -> rule", value)
    out = []
    for pattern, rule in value.items():
        rpath = f'{path}."{pattern}"'
        if not isinstance(rule, Mapping):
            raise fail(rpath, "expected a table", rule)
        check_keys(key_path(rpath), rule, RULE_KEYS)
        for kind, spec_ in rule.items():
            try:
                if kind == "activity_reduction":
                    choice(*REDUCTIONS)(f"{rpath}.{kind}", spec_)
                elif kind.endswith("constraint"):
                    constraints.get(spec_)
                else:
                    penalties.get(spec_)
            except StudyError:
                raise
            except (ValueError, TypeError) as err:
                raise fail(f"{rpath}.{kind}", str(err).rstrip("."), spec_) from None
        out.append((str(pattern), copy.deepcopy(dict(rule))))
    return tuple(out)


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial trains with: typed tables, ``None`` for techniques not used.

    ``raw`` is the concrete table it was parsed from (what run directories record).
    """

    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    rules: tuple[tuple[str, dict[str, Any]], ...] = ()
    label_smoothing: LabelSmoothingConfig | None = None
    augment: AugmentConfig | None = None
    mix: MixConfig | None = None
    early_stopping: EarlyStoppingConfig | None = None
    ensemble: EnsembleConfig | None = None
    norm_bound: NormBoundConfig | None = None
    pretrain: PretrainConfig | None = None
    semi_supervised: SemiSupervisedConfig | None = None
    multitask: MultiTaskConfig | None = None
    post_hoc_stopping: PostHocConfig | None = None
    #: set whenever ``train.optimizer = "sam"`` (the defaults without a ``sam`` table)
    sam: SamConfig | None = None
    rdrop: RDropConfig | None = None
    confidence_penalty: ConfidencePenaltyConfig | None = None
    prune: PruneConfig | None = None
    input_gradient: InputGradientConfig | None = None
    layer_decay: LayerDecayConfig | None = None
    input_noise: float = 0.0
    weight_noise: float = 0.0
    #: ``proximal_l1 = λ``: soft-threshold the kernels by ``lr · λ`` after each step
    #: (:func:`reglab.proximal_l1`).
    proximal_l1: float = 0.0
    schedules: tuple[ScheduleConfig, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: ``[train] init`` parsed against the study (:mod:`reglab.lab.settings.init`), or None
    init_source: Any = field(default=None, compare=False, repr=False)

    # -- parsing -------------------------------------------------------------------------
    @classmethod
    def parse(
        cls, raw: Mapping[str, Any], path: str, origins: Mapping[str, Mapping[str, str]]
    ) -> TrialConfig:
        """Parse one concrete point. ``path`` names its grid entry; ``origins[section][key]``
        the table a merged value was written in (the study-level one or the entry's)."""
        sections = {s: origins.get(s, {}) for s in ("data", "model", "train")}
        values: dict[str, Any] = {
            "data": DataConfig.parse(
                raw.get("data"), section_base(sections["data"], path, "data"), sections["data"]
            ),
            "model": parse_model(
                raw.get("model"), section_base(sections["model"], path, "model"), sections["model"]
            ),
            "train": TrainConfig.parse(
                raw.get("train"), section_base(sections["train"], path, "train"), sections["train"]
            ),
        }
        if "rules" in raw:
            values["rules"] = _rules(f"{path}.rules", raw["rules"])
        for key, table_cls in TECHNIQUES.items():
            if key in raw:
                values[key] = table_cls.parse(raw[key], f"{path}.{key}")
        for key, check in LEVELS.items():
            if key in raw:
                values[key] = check(f"{path}.{key}", raw[key])
        if "schedules" in raw:
            values["schedules"] = _schedules(f"{path}.schedules", raw["schedules"])
        if values["train"].optimizer == "sam" and "sam" not in values:
            values["sam"] = SamConfig()
        concrete = copy.deepcopy(dict(raw))
        if isinstance(concrete.get("model"), Mapping):  # without another kind's study settings
            own = set(type(values["model"]).keys())
            concrete["model"] = {k: v for k, v in concrete["model"].items() if k in own | {"kind"}}
        config = cls(**values, raw=concrete)
        config._check(path, sections)
        return config

    def _check(self, path: str, sections: Mapping[str, Mapping[str, str]]) -> None:
        """Checks across tables, before anything is trained."""
        data_key = section_path(sections["data"], path, "data")
        model_key = section_path(sections["model"], path, "model")
        family = self.model_kind.family
        if self.data.name == "patches" and family != "autoencoder":
            raise fail(
                data_key("name"),
                "'patches' has no labels: use model.kind = 'autoencoder'",
                "patches",
            )
        if self.data.name in ("teacher", "gutenberg") and family not in ("regression", "language"):
            partner = "linear" if self.data.name == "teacher" else "lstm-lm"
            raise fail(
                model_key("kind"),
                f"the '{self.data.name}' data and model.kind = '{partner}' go together",
                self.model.kind,  # type: ignore[union-attr]
            )
        self.model.check(self.data, model_key)  # type: ignore[union-attr]
        rows = self.data.dataset.train_rows
        if self.data.subset and rows and self.data.subset > rows:
            raise fail(
                data_key("subset"),
                f"'{self.data.title}' has {rows} training rows",
                self.data.subset,
            )
        needs_validation = [k for k in ("early_stopping", "post_hoc_stopping") if getattr(self, k)]
        if needs_validation and self.data.validation <= 0:
            key = needs_validation[0]
            watched = (
                "a held-out split to monitor"
                if key == "early_stopping"
                else "the criteria watch the validation loss"
            )
            raise fail(f"{path}.{key}", f"needs data.validation > 0 ({watched})", self.raw[key])
        if self.semi_supervised and (self.multitask or self.label_smoothing):
            raise fail(
                f"{path}.semi_supervised",
                "cannot be combined with multitask or label_smoothing (it has its own loss)",
                self.raw["semi_supervised"],
            )
        if self.ensemble is not None:
            alone = ("rules", "early_stopping", "label_smoothing", "input_noise", "augment")
            clash = sorted(
                k
                for k in (*alone, *LOSS_TECHNIQUES, "sam", "prune", "layer_decay")
                if k in self.raw
            )
            if clash:
                raise fail(
                    f"{path}.ensemble",
                    f"cannot be combined with {', '.join(clash)} (bagged members train with "
                    "plain Adam)",
                    self.raw["ensemble"],
                )
        if self.mix is not None:
            self._check_mix(path)
        self._check_family(path)
        self._check_modern(path, model_key)
        if (self.pretrain or self.semi_supervised or self.multitask) and self.model.kind != "mlp":  # type: ignore[attr-defined]
            raise fail(
                model_key("kind"),
                "pretrain, semi_supervised and multitask need kind = 'mlp'",
                self.model.kind,
            )  # type: ignore[union-attr]
        if self.augment is not None and self.data.dataset.image is None:
            raise fail(
                f"{path}.augment", f"'{self.data.title}' inputs are not images", self.raw["augment"]
            )
        if self.rules:
            self._check_rules(path)
        for i, entry in enumerate(self.schedules):
            self._check_schedule(f"{path}.schedules[{i}]", entry)

    def _check_mix(self, path: str) -> None:
        clash = sorted(k for k in ("semi_supervised", "multitask", "ensemble") if k in self.raw)
        if clash:
            raise fail(
                f"{path}.mix", f"cannot be combined with {', '.join(clash)}", self.raw["mix"]
            )
        mix: MixConfig = self.mix  # type: ignore[assignment]
        if mix.kind == "cutmix" and self.data.dataset.image is None:
            raise fail(f"{path}.mix", f"'{self.data.title}' inputs are not images", self.raw["mix"])
        if self.label_smoothing is not None and self.label_smoothing.form != "uniform":
            raise fail(
                f"{path}.mix",
                "mixes uniformly smoothed labels: use label_smoothing.form = 'uniform'",
                self.raw["mix"],
            )

    def _check_family(self, path: str) -> None:
        """Techniques only the classifier runner reads are refused on other families' points
        (where they would be silently ignored)."""
        if self.model_kind.family == "classifier":
            return
        for key in CLASSIFIER_ONLY:
            if getattr(self, key) not in (None, 0):  # a level of 0 is "off"
                raise fail(
                    f"{path}.{key}",
                    "applies to classifier trials (model.kind = 'mlp', 'cnn', 'resnet' or "
                    f"a factory), not {self.model.kind!r}",  # type: ignore[attr-defined]
                    self.raw[key],
                )

    def _check_modern(self, path: str, model_key: Any) -> None:
        """The issue-25 techniques against the rest of the point."""
        if "sam" in self.raw and self.train.optimizer != "sam":
            raise fail(
                f"{path}.sam",
                f"applies with train.optimizer = 'sam' (this point has {self.train.optimizer!r})",
                self.raw["sam"],
            )
        shared = [k for k in ("semi_supervised", "multitask") if k in self.raw]
        for key in LOSS_TECHNIQUES:
            if key in self.raw and shared:
                raise fail(
                    f"{path}.{key}",
                    f"cannot be combined with {shared[0]} (the shared model has its own loss)",
                    self.raw[key],
                )
        if self.rdrop is not None and not self.model.stochastic:  # type: ignore[attr-defined]
            raise fail(
                f"{path}.rdrop",
                "needs a model with dropout (e.g. model.dropout = 0.3): without it both passes "
                "agree and the KL is 0",
                self.raw["rdrop"],
            )
        if self.rdrop is not None and self.input_gradient is not None:
            raise fail(
                f"{path}.input_gradient",
                "cannot be combined with rdrop (its second pass would replace the input whose "
                "gradient is penalized)",
                self.raw["input_gradient"],
            )
        if self.prune is not None:
            begin, end = self.prune.window(self.train.epochs)
            gradual = self.prune.schedule == "gradual"
            if begin >= self.train.epochs or (gradual and not begin < end <= self.train.epochs):
                raise fail(
                    f"{path}.prune",
                    f"needs begin < end <= train.epochs = {self.train.epochs} (one_shot: begin "
                    "< train.epochs)",
                    self.raw["prune"],
                )
        semi = self.semi_supervised
        consistency = semi is not None and semi.method != "reconstruction"
        if consistency and semi.rows == "unlabelled" and self.data.labels <= 0:  # type: ignore[union-attr]
            raise fail(
                f"{path}.semi_supervised.rows",
                "'unlabelled' needs unlabelled rows: set data.labels > 0",
                "unlabelled",
            )

    def _check_schedule(self, path: str, entry: ScheduleConfig) -> None:
        """The schedule's target exists in this point, and has the coefficient it names."""
        from reglab.schedules import coefficient_attribute

        if self.kind != "classifier":
            raise fail(path, "schedules apply to classifier trials", entry.target)
        target = entry.resolved
        if target is not None and target.what == "proximal_l1":
            return
        if target is not None and target.what == "norm_bound":
            if self.norm_bound is None:
                raise fail(f"{path}.target", "this grid point has no norm_bound", entry.target)
            return
        rules = dict(self.rules)
        if target is None or target.glob not in rules:
            raise fail(
                f"{path}.target",
                "expected 'norm_bound', 'proximal_l1' or 'rules.<glob>.<kind>' naming one of "
                f"this point's rules ({', '.join(rules) or 'none'}) and kernel, bias or activity",
                entry.target,
            )
        glob, kind = target.glob, target.slot
        if kind not in rules[glob]:
            raise fail(f"{path}.target", f"rule {glob!r} has no {kind} penalty", entry.target)
        try:
            coefficient_attribute(self.build_rules()[glob][kind], entry.attribute or None)
        except InvalidParameterError as err:
            raise fail(f"{path}.attribute", str(err).rstrip("."), entry.attribute) from None

    def _check_rules(self, path: str) -> None:
        """Resolve the rules against the model's modules now (on the meta device), so a glob
        that matches nothing fails before any trial runs. User factories are not built here:
        their rules are checked when the trial starts."""
        if self.model_kind.user_code:
            return
        from reglab.regularization.rules import resolve

        with torch.device("meta"):
            net = self.network()
        try:
            resolve(net, self.rules_mapping(), "batch")
        except InvalidParameterError as err:
            raise fail(f"{path}.rules", str(err).rstrip("."), self.raw.get("rules")) from None

    # -- what the runners ask ------------------------------------------------------------
    @property
    def model_kind(self) -> registry.Kind:
        """The registered kind ``[model] kind`` names: its table, builder and runner."""
        return registry.get(self.model.kind)  # type: ignore[attr-defined]

    @property
    def kind(self) -> str:
        """``"ensemble"`` (a classifier bagged), or the kind's family: ``"classifier"``,
        ``"autoencoder"``, ``"regression"`` or ``"language"``."""
        if self.ensemble is not None:
            return "ensemble"
        return self.model_kind.family

    def network(self) -> torch.nn.Module:
        """The module the rules are attached to (the kind's builder)."""
        return self.model_kind.network(self)

    def rules_mapping(self) -> dict[str, dict[str, Any]]:
        """``rules`` as :func:`reglab.attach` takes them (identifiers)."""
        return {pattern: copy.deepcopy(rule) for pattern, rule in self.rules}

    def build_rules(self) -> dict[str, dict[str, Any]]:
        """``rules`` with new penalty and constraint objects (one trial's: schedules change
        their coefficients), for :func:`reglab.attach`."""

        def build(key: str, value: Any) -> Any:
            if key == "activity_reduction":
                return value
            return constraints.get(value) if key.endswith("constraint") else penalties.get(value)

        return {
            pattern: {key: build(key, value) for key, value in rule.items()}
            for pattern, rule in self.rules_mapping().items()
        }

    @property
    def stochastic(self) -> bool:
        """Whether training draws random numbers beyond initialisation and batch order
        (dropout, noise, augmentation, pre-training, unknown models)."""
        return bool(
            self.model.stochastic  # type: ignore[union-attr]
            or self.input_noise
            or self.weight_noise
            or self.augment
            or self.mix
            or self.pretrain
        )

    def override(self, changes: Mapping[str, Any], path: str = "override") -> TrialConfig:
        """A copy with ``changes`` (``{"train": {"epochs": 3}}``) merged into the concrete
        table and parsed again (validated like the study file)."""
        raw = copy.deepcopy(self.raw)
        for section, value in changes.items():
            if isinstance(value, Mapping) and isinstance(raw.get(section), Mapping):
                raw[section] = {**raw[section], **value}
            else:
                raw[section] = copy.deepcopy(value)
        return TrialConfig.parse(raw, path, {})

    def to_dict(self) -> dict[str, Any]:
        """The parsed point with every default filled in (``reglab show``)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("raw", "init_source"):
                continue
            value = getattr(self, f.name)
            if (
                value is None
                or (f.name in LEVELS and not value)
                or (f.name in ("rules", "schedules") and not value)
            ):
                continue
            if f.name == "model":
                out["model"] = {"kind": value.kind, **value.to_dict()}
            elif f.name == "rules":
                out["rules"] = self.rules_mapping()
            elif f.name == "schedules":
                out["schedules"] = [entry.to_dict() for entry in value]
            else:
                out[f.name] = value.to_dict() if isinstance(value, Table) else value
        return out
