"""The compatibility promise: every public name and its signature. A rename or a changed argument
fails here, so changing the public API is a visible decision (update README "Python API" too)."""

import importlib
import inspect

import pytest

PUBLIC = {
    "tfuda.adapt": "(model: 'keras.Model | tuple[keras.layers.Layer, keras.layers.Layer]', source: 'Data' = None, "
                   "target: 'Data' = None, *, method: 'str | Method' = 'adamatch', class_names: 'Sequence[str] | None' "
                   "= None, embedding: 'str | None' = None, image_size: 'int | None' = None, eval_target: 'Data' = "
                   "None, eval_source: 'Data' = None, run_dir: 'str | Path | None' = None, resume: 'bool' = False, "
                   "callbacks: 'Sequence[keras.callbacks.Callback]' = (), verbose: 'bool' = True, **options: 'Any') "
                   "-> 'AdaptResult'",
    "tfuda.AdaptResult": "(model: 'keras.Model', class_names: 'list[str]', metrics: 'dict', run_dir: 'Path | None') "
                         "-> None",
    "tfuda.evaluate": "(model: 'keras.Model', data: 'Data', *, class_names: 'Sequence[str] | None' = None) "
                      "-> 'EvalResult'",
    "tfuda.EvalResult": "(accuracy: 'float', per_class: 'dict[str, float | None]', confusion: 'list[list[int]]') "
                        "-> None",
    "tfuda.feed": "(method: 'str | Method', source: 'Data' = None, target: 'Data' = None, *, class_names: "
                  "'Sequence[str] | None' = None, image_size: 'int' = 32, batch_size: 'int' = 32, uratio: 'int | "
                  "None' = None, seed: 'int' = 0, flip: 'bool' = False) -> 'tf.data.Dataset'",
    "tfuda.as_classifier": "(model: 'keras.Model | Sequence[keras.layers.Layer]', embedding: 'str | None' = None, *, "
                           "image_size: 'int | None' = None, origin: 'str' = 'model') -> 'keras.Model'",
    "tfuda.build_model": "(name: 'str', num_classes: 'int', image_size: 'int', weights: 'str | None' = None) "
                         "-> 'keras.Model'",
    "tfuda.Method": "()",
    "tfuda.METHODS": None,
    "tfuda.AdaMatch": "(tau: 'float' = 0.9, lambda_u: 'float' = 1.0, alignment: 'str' = 'batch', entropy: 'float' = 0.0, "
                     "realign: 'float' = 0.0, realign_images: 'int' = 4096, vat: 'float' = 0.0, "
                     "vat_eps: 'float' = 3.5, vmt: 'float' = 0.0, refine: 'float' = 0.25, refine_source: 'float' = 0.0, "
                     "refine_align: 'bool' = False, refine_teacher: 'str' = 'ema', refine_shifted: 'bool' = False)",
    "tfuda.FixMatch": "(tau: 'float' = 0.95, lambda_u: 'float' = 1.0, temperature: 'float' = 1.0)",
    "tfuda.DANN": "(hidden: 'int' = 256)",
    "tfuda.Contrastive": "(pretrain_fraction: 'float' = 0.5, temperature: 'float' = 0.2, projection: 'int' = 64)",
    "tfuda.SourceOnly": "(label_smoothing: 'float' = 0.0, augment: 'str' = 'weak')",
    "tfuda.SHOT": "(beta: 'float' = 0.3, interval: 'int' = 100, max_images: 'int' = 4096, reestimate: 'bool' = False)",
    "tfuda.TENT": "(episode: 'int' = 0, reestimate: 'bool' = True)",
    "tfuda.write_report": "(run_path: 'str | Path', *, export_report: 'str | None' = None, baseline: 'str | None' = "
                          "None, embedding: 'str' = 'tsne', max_points: 'int' = 500, plots: 'bool' = True) -> 'Path'",
    "tfuda.UserError": None,
    "pipelines.open_source": "(spec: 'str', *, strict: 'bool' = False, max_image_pixels: 'int' = 100000000, "
                             "tfds_data_dir: 'str | None' = None, tfds_download: 'bool' = False) -> 'Source'",
    "pipelines.from_dataset": "(dataset: 'tf.data.Dataset', class_names: 'Sequence[str] | int | None' = None, *, "
                              "name: 'str' = 'dataset', argument: 'str' = 'dataset') -> 'Source'",
    "pipelines.Source": "(info: 'SourceInfo')",
    "pipelines.SourceInfo": "(spec: 'str', class_names: 'tuple[str, ...] | None', num_examples: 'int | None', "
                            "image_shape: 'tuple[int | None, int | None, int | None]', held_out: 'str | None' = None, "
                            "skipped: 'tuple[str, ...]' = ()) -> None",
    "pipelines.BUILTINS": None,
    "pipelines.SUITE": None,
    "pipelines.DataError": None,
    "export.export_model": "(model: 'keras.Model', class_names: 'Sequence[str]', out: 'str | Path', *, eval_data: "
                           "'Data', calibration: 'Data' = None, name: 'str' = 'tfuda', version: 'str | int' = 'auto', "
                           "overwrite: 'bool' = False, formats: 'Sequence[str]' = ('savedmodel', 'tflite', 'onnx'), "
                           "quantize: 'Sequence[str]' = ('float32', 'int8'), max_eval_images: 'int' = 2000, "
                           "min_agreement: 'float' = 0.99, min_agreement_int8: 'float' = 0.97, run: 'str | None' = "
                           "None, verbose: 'bool' = True) -> 'dict'",
    "export.ExportFailed": None,
    "export.FORMATS": None,
}
"""Public name -> its signature (None: a constant or an exception class, checked by name only)."""

ERRORS = ("tfuda.UserError", "pipelines.DataError")


def _get(dotted: str):
    package, name = dotted.split(".")
    return getattr(importlib.import_module(package), name)


@pytest.mark.parametrize("package", ["tfuda", "pipelines", "export"])
def test_each_package_exports_exactly_the_listed_names(package):
    module = importlib.import_module(package)
    listed = sorted(name.split(".")[1] for name in PUBLIC if name.startswith(package + "."))
    assert sorted(module.__all__) == listed
    assert sorted(dir(module)) == listed
    with pytest.raises(AttributeError, match="no attribute 'not_public'"):
        getattr(module, "not_public")


@pytest.mark.parametrize("dotted", sorted(PUBLIC))
def test_public_name_keeps_its_signature_and_docstring(dotted):
    obj = _get(dotted)
    if PUBLIC[dotted] is not None:
        assert str(inspect.signature(obj)) == PUBLIC[dotted]
    if inspect.isclass(obj) or inspect.isfunction(obj):
        assert obj.__doc__ and obj.__doc__.strip(), f"{dotted} needs a docstring"


@pytest.mark.parametrize("dotted", ERRORS)
def test_user_errors_are_value_errors(dotted):
    assert issubclass(_get(dotted), ValueError)


def test_importing_the_packages_does_not_import_tensorflow():
    import subprocess
    import sys

    code = "import sys, tfuda, pipelines, export; print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
