"""One `Config` for a training run: defaults < `--config FILE` < explicit command-line flags."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from pipelines.errors import UserError
from pipelines.limits import MAX_IMAGE_PIXELS
from tfuda.validate import SCORES


class ConfigError(UserError):
    """A flag or config-file value that cannot be used."""


XLA_CHOICES = ("auto", "on", "off")
MOMENTUM_CHOICES = ("nesterov", "plain")
"""`--momentum`: SGD with Nesterov or plain momentum 0.9 (unset: the method's `default_momentum`)."""
SETTINGS = ("uda", "ssl", "ssda")
DEFAULT_TARGET = "digits-m"
AUGMENT_ON_CHOICES = ("data", "device")
STRATEGIES = ("default", "mirrored", "multiworker", "tpu")
"""`--strategy` names (see `tfuda.engine.distribute`)."""
ON_COLLAPSE = ("warn", "stop", "rollback")
"""`--on-collapse` choices (see `tfuda.validate.alarm`, `tfuda.engine.selection`)."""
SELECT_LAST = "last"
"""`--select` of the final EMA weights; the other choices are `tfuda.validate.SCORES`."""


_TYPES = {"int": int, "float": (int, float), "bool": bool, "str": str, "dict": dict}
_TYPE_WORDS = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
               "dict": "a mapping of name: value"}


@dataclasses.dataclass
class Config:
    """Everything a run needs; saved as `config.json` in the run directory.

    Attribute names are the command-line flags with underscores (`--batch-size` ->
    `batch_size`); a config file uses the same keys.
    """

    source: str | None = "digits"
    target: str | None = None
    eval_target: str | None = None
    eval_source: str | None = None
    method: str = "adamatch"
    setting: str = "uda"
    labeled_per_class: int | None = None
    target_labeled: str | None = None
    pretrain_steps: int | None = None
    finetune_steps: int | None = None
    method_args: dict[str, Any] = dataclasses.field(default_factory=dict)
    model: str = "cnn-small"
    weights: str | None = None
    init: str | None = None
    class_names: str | None = None
    image_size: int = 32
    steps: int | None = None
    batch_size: int | None = None
    uratio: int | None = None
    lr: float | None = None
    weight_decay: float = 5e-4
    ema_decay: float = 0.999
    momentum: str | None = None
    seed: int = 0
    out: str | None = None
    xla: str = "auto"
    augment_on: str = "data"
    flip: bool = False
    mixed_precision: bool = False
    checkpoint_every: int = 100
    eval_every: int = 500
    validation_size: int | None = None
    on_collapse: str = "warn"
    select: str = SELECT_LAST
    strict: bool = False
    max_image_pixels: int = MAX_IMAGE_PIXELS
    tfds_data_dir: str | None = None
    tfds_download: bool = False
    no_report: bool = False
    strategy: str = "default"

    RESUMABLE = ("steps", "xla", "checkpoint_every", "eval_every", "validation_size", "on_collapse", "augment_on",
                 "strict", "max_image_pixels", "tfds_data_dir", "tfds_download", "no_report", "strategy")
    """Fields that `--resume` may change; the others are fixed by the saved config."""

    def validate(self) -> "Config":
        """Checks every value (its type first) and fills derived ones; raises ConfigError naming
        the flag and the fix.

        Derived: `target` (unset: the source itself for SSL, `digits-m` for the default source,
        otherwise an error) and, for `contrastive`, `steps` = pretrain + fine-tune steps. `steps`
        and `batch_size` may stay None (set from the data once it is open: `set_budget`).
        """
        self._check_types()

        def positive(name: str) -> None:
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")

        for name in ("image_size", "checkpoint_every", "eval_every", "max_image_pixels"):
            positive(name)
        if self.seed < 0:
            raise ConfigError(f"--seed must be a non-negative integer, got {self.seed}")
        for name in ("steps", "batch_size", "uratio", "validation_size"):
            if getattr(self, name) is not None:
                positive(name)
        if self.image_size < 8:
            raise ConfigError(f"--image-size must be at least 8, got {self.image_size}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"--lr must be a positive number, got {self.lr!r}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"--weight-decay must be >= 0, got {self.weight_decay!r}")
        if not (0 <= self.ema_decay < 1):
            raise ConfigError(f"--ema-decay must be in [0, 1), got {self.ema_decay!r}")
        if self.momentum is not None and self.momentum not in MOMENTUM_CHOICES:
            raise ConfigError(f"--momentum must be one of {', '.join(MOMENTUM_CHOICES)}, got {self.momentum!r}")
        if self.xla not in XLA_CHOICES:
            raise ConfigError(f"--xla must be one of {', '.join(XLA_CHOICES)}, got {self.xla!r}")
        if self.on_collapse not in ON_COLLAPSE:
            raise ConfigError(f"--on-collapse must be one of {', '.join(ON_COLLAPSE)}, got {self.on_collapse!r}")
        if self.select not in (SELECT_LAST, *SCORES):
            raise ConfigError(f"--select must be {SELECT_LAST} or a validator ({', '.join(SCORES)}), got {self.select!r}")
        if self.augment_on not in AUGMENT_ON_CHOICES:
            raise ConfigError(f"--augment-on must be one of {', '.join(AUGMENT_ON_CHOICES)}, got {self.augment_on!r}")
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.init is not None and self.weights is not None:
            raise ConfigError("--init starts from an existing model; --weights applies to --model only: give one")
        if self.class_names is not None and self.init is None:
            raise ConfigError("--class-names names the classes of an --init model: give --init too")
        self._validate_setting()
        self._derive_phase_steps()
        return self

    def _check_types(self) -> None:
        """Each value has its field's type (a config file can hold `"0.99"` or `"false"`)."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            kinds = [kind.strip() for kind in str(field.type).split("|")]
            if value is None and "None" in kinds:
                continue
            expected = next(kind for kind in kinds if kind != "None").split("[")[0]
            if not isinstance(value, _TYPES[expected]) or (expected != "bool" and isinstance(value, bool)):
                flag = "method_args" if field.name == "method_args" else f"--{field.name.replace('_', '-')}"
                hint = (" (a string: write it without quotes in the config file)"
                        if isinstance(value, str) and expected != "str" else "")
                raise ConfigError(f"{flag} must be {_TYPE_WORDS[expected]}, got {value!r}{hint}")

    def _validate_setting(self) -> None:
        if self.setting not in SETTINGS:
            raise ConfigError(f"--setting must be one of {', '.join(SETTINGS)}, got {self.setting!r}")
        if self.labeled_per_class is not None:
            if self.labeled_per_class < 1:
                raise ConfigError(f"--labeled-per-class must be a positive integer, got {self.labeled_per_class!r}")
        if self.setting == "uda":
            if self.labeled_per_class is not None or self.target_labeled is not None:
                raise ConfigError("--labeled-per-class and --target-labeled need --setting ssl or ssda")
            if self.target is None:
                if self.source != Config.source:
                    raise ConfigError("--target is required: the unlabeled images of the domain to adapt to")
                self.target = DEFAULT_TARGET
        elif self.setting == "ssl":
            if self.labeled_per_class is None:
                raise ConfigError("--setting ssl needs --labeled-per-class K (labeled images kept per class of --source)")
            if self.target_labeled is not None:
                raise ConfigError("--target-labeled is for --setting ssda; SSL uses one domain")
            self.target = self.target or self.source
        else:
            if self.labeled_per_class is None or self.target_labeled is None:
                raise ConfigError("--setting ssda needs --target-labeled SPEC and --labeled-per-class K "
                                  "(K labeled target images per class, carved from SPEC)")
            self.target = self.target or (DEFAULT_TARGET if self.source == Config.source else None)
            if self.target is None:
                raise ConfigError("--target is required: the unlabeled images of the domain to adapt to")

    def set_budget(self, steps: int, batch_size: int) -> "Config":
        """Fills the `steps` and `batch_size` left to the data (`tfuda.budget`) and the phases that
        follow from the steps."""
        self.steps, self.batch_size = steps, batch_size
        self._derive_phase_steps()
        return self

    def _derive_phase_steps(self) -> None:
        phases = (self.pretrain_steps, self.finetune_steps)
        if self.method != "contrastive":
            if any(p is not None for p in phases):
                raise ConfigError("--pretrain-steps/--finetune-steps apply to --method contrastive only")
            return
        for name in ("pretrain_steps", "finetune_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        pretrain, finetune = phases
        if pretrain is not None and finetune is not None:
            self.steps = pretrain + finetune
        elif self.steps is None:
            return  # set_budget derives them
        elif pretrain is not None:
            finetune = self.steps - pretrain
        elif finetune is not None:
            pretrain = self.steps - finetune
        else:
            pretrain = self.steps // 2
            finetune = self.steps - pretrain
        if pretrain < 1 or finetune < 1:
            raise ConfigError(f"--steps {self.steps} leaves no room for both phases ({pretrain} pretraining, "
                              f"{finetune} fine-tuning steps): give --pretrain-steps and --finetune-steps, "
                              "or more --steps")
        self.pretrain_steps, self.finetune_steps = pretrain, finetune

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str) -> "Config":
        unknown = set(values) - cls.field_names()
        if unknown:
            raise ConfigError(
                f"{origin}: unknown key(s) {', '.join(sorted(unknown))}; keys are the flag names "
                "with underscores, e.g. batch_size")
        return cls(**values)


def read_config_file(path: str) -> dict[str, Any]:
    """Reads a YAML or JSON mapping of flag names (underscores) to values."""
    import yaml

    if not os.path.isfile(path):
        raise ConfigError(f"--config file '{path}' does not exist")
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
    except (ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"--config file '{path}' is not valid {'JSON' if path.endswith('.json') else 'YAML'}: {err}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"--config file '{path}' must hold a mapping of flag names to values")
    return {key.replace("-", "_"): value for key, value in values.items()}


def check_resumable(saved: dict[str, Any], values: dict[str, Any]) -> None:
    """Raises ConfigError naming every field of `values` that differs from the `saved` run config
    and that `--resume` may not change (all but `Config.RESUMABLE`, `out` and `method_args`,
    which `tfuda.engine.run.keep_method_args` checks by type)."""
    fixed = sorted(k for k, v in values.items()
                   if k not in (*Config.RESUMABLE, "out", "method_args") and saved.get(k) != v)
    if fixed:
        raise ConfigError(
            "--resume continues the saved run; " + ", ".join(
                f"--{k.replace('_', '-')} cannot change (was {saved.get(k)!r}, given {values[k]!r})" for k in fixed)
            + f" (may change: {', '.join('--' + k.replace('_', '-') for k in Config.RESUMABLE)})")


def resolve(cli: dict[str, Any], config_file: str | None = None,
            saved: dict[str, Any] | None = None) -> Config:
    """Merges the layers of a config: defaults < saved run config (resume) < file < CLI.

    Args:
      cli: only the flags given explicitly on the command line.
      config_file: path given with `--config`.
      saved: the `config.json` of the run being resumed; only `Config.RESUMABLE` fields may
        then differ (`method_args` given update the saved ones; the method checks that they
        change nothing: `tfuda.engine.run.keep_method_args`).
    """
    values: dict[str, Any] = {}
    if saved is not None:
        values.update(saved)
    overrides = dict(read_config_file(config_file)) if config_file else {}
    overrides.update(cli)
    if saved is not None:
        if "method_args" in overrides:  # given ones update the saved ones (checked by type in keep_method_args)
            overrides["method_args"] = {**(saved.get("method_args") or {}), **(overrides["method_args"] or {})}
        check_resumable(saved, overrides)
    values.update(overrides)
    if saved is not None and values.get("method") == "contrastive" and values.get("steps") != saved.get("steps"):
        values["finetune_steps"] = None  # a new --steps extends (or shortens) the fine-tuning phase
    return Config.from_dict(values, config_file or "command line").validate()
