"""tfuda: adapt an image classifier from a labeled source domain to an unlabeled target domain.

Python API (README "Python API"; these names are the public, stable ones):

    adapt(model, source, target, method=..., **options) -> AdaptResult   train, from Python
    evaluate(model, data) -> EvalResult                                  accuracy on labeled data
    feed(method, source, target) -> tf.data.Dataset                      the training feed of a method
    as_classifier(model, embedding=None) -> keras.Model                  any classifier in tfuda's form
    build_model(name, num_classes, image_size) -> keras.Model            the built-in models by name
    AdaMatch, FixMatch, DANN, Contrastive, SourceOnly, SHOT, TENT        methods with typed hyper-parameters
    Method, METHODS                                                      their base class and registry
    write_report(run_dir) -> Path                                        a run's HTML report and plots
    UserError                                                            every error a caller can fix

Command lines: `python -m tfuda.train`, `python -m tfuda.predict`, `python -m tfuda.sweep`;
export with `python -m export.savedmodel`. Names load on first use, so `import tfuda` is cheap.
"""

from pipelines.lazy import lazy_module

__version__ = "0.1.0"

__all__ = ["adapt", "AdaptResult", "evaluate", "EvalResult", "feed", "as_classifier", "build_model", "Method", "METHODS",
           "AdaMatch", "FixMatch", "DANN", "Contrastive", "SourceOnly", "SHOT", "TENT", "write_report", "UserError"]

__getattr__, __dir__ = lazy_module(__name__, {
    "adapt": "tfuda.api", "AdaptResult": "tfuda.api", "evaluate": "tfuda.api", "feed": "tfuda.api",
    "EvalResult": "tfuda.engine.evaluate", "as_classifier": "tfuda.models.foreign",
    "build_model": "tfuda.models.registry", "Method": "tfuda.methods", "METHODS": "tfuda.methods",
    "AdaMatch": "tfuda.methods", "FixMatch": "tfuda.methods", "DANN": "tfuda.methods",
    "Contrastive": "tfuda.methods", "SourceOnly": "tfuda.methods", "SHOT": "tfuda.methods", "TENT": "tfuda.methods",
    "write_report": "tfuda.report", "UserError": "pipelines.errors",
})
