"""Knowledge distillation: train a small student classifier to mimic a large, frozen teacher.

The loss on each batch, with ``T = temperature``, ``z_s``/``z_t`` the student/teacher logits and ``y`` the
labels::

    loss = alpha * CE(y, softmax(z_s))
         + (1 - alpha) * T**2 * KL(softmax(z_t / T) || softmax(z_s / T))
         + options.hint_weight * sum_i MSE(adapter_i(student_hint_i), teacher_hint_i)

each term a mean over the batch (the KL summed over classes first; each MSE a mean over all elements).
The T**2 keeps the soft term's gradients on the scale of the hard one as T changes (Hinton et al., 2015).
``alpha=1`` is plain cross-entropy training; ``alpha=0`` is pure distillation.

Logits: a model whose output is probabilities is trained and read through its pre-softmax tensor. A final
``Softmax`` layer or ``Activation("softmax")`` gives its input tensor; a final ``Dense(activation="softmax")``
gives that Dense without its activation (same kernel and bias). Any other output whose rows are
non-negative and sum to 1 on a sample batch is taken as probabilities and its log-probabilities are used:
they equal the logits up to a per-row shift, which the softmax cancels. Other outputs are logits as they are.

Hints (FitNets): ``hints=[("teacher_layer", "student_layer"), ...]`` adds an MSE between those layers'
outputs. When the channel counts differ, a trainable 1x1 Conv2D (4-D outputs) or Dense (2-D outputs) maps
the student's channels to the teacher's; it is used for training only and is not part of the student.

The teacher is copied and frozen (BatchNorm in inference mode); the model(s) passed in never change. With
no hints, the teacher's logits are computed once before training rather than on every batch.

Example:
    >>> result = distill("teacher.keras", train="digits.npz", width=0.5, epochs=5)   # doctest: +SKIP
    >>> result.top1_teacher, result.top1_student, result.params_student              # doctest: +SKIP
    (0.981, 0.975, 59890)
    >>> export(result.model, to="tflite", out="artifacts")                           # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from edgecv.converters.student import load_keras, narrow_copy
from edgecv.converters.tf_env import import_tensorflow
from edgecv.converters.train_data import TrainingData, open_training_data
from edgecv.errors import ConfigError, InputError
from edgecv.manifest import Preprocess

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillOptions:
    """Expert settings for :func:`distill`."""

    learning_rate: float = 2e-3  # Adam, decayed to 0 over the training along a cosine (when the step count is known)
    cosine: bool = True
    hint_weight: float = 1.0  # weight of the summed hint MSEs in the loss
    validation: float = 0.1  # share of the data held out (seeded) for the top-1 figures
    limit: int | None = None  # at most this many samples of the training data (None: all)
    probs_atol: float = 1e-3  # rows summing to 1 within this are probabilities

    def __post_init__(self) -> None:
        if not self.learning_rate > 0:
            raise ConfigError(f"learning_rate: expected a value > 0, got {self.learning_rate}")
        if not self.hint_weight >= 0:
            raise ConfigError(f"hint_weight: expected a value >= 0, got {self.hint_weight}")
        if not 0 < self.validation < 1:
            raise ConfigError(f"validation: expected a share in (0, 1), got {self.validation}")


@dataclass(frozen=True)
class DistillResult:
    """The trained student (a new Keras 3 model) and how it compares with its teacher."""

    model: Any
    top1_teacher: float  # on the validation split
    top1_student: float
    params_teacher: int
    params_student: int
    history: dict[str, list[float]] = field(default_factory=dict)  # per epoch: loss, ce, kd, hint, top1, val_*
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"teacher {100 * self.top1_teacher:.2f}% top-1, {self.params_teacher:,} params; "
                f"student {100 * self.top1_student:.2f}% top-1, {self.params_student:,} params "
                f"({self.params_student / max(1, self.params_teacher):.2f}x); {self.seconds:.0f} s")


def distill(
    teacher: Any,
    *,
    train: Any,
    student: Any = None,
    width: float = 0.5,
    temperature: float = 4.0,
    alpha: float = 0.1,
    hints: Sequence[tuple[str, str] | str] = (),
    epochs: int = 5,
    batch_size: int = 64,
    seed: int = 0,
    preprocess: Preprocess = Preprocess(mean=(0,), std=(255,)),
    options: DistillOptions = DistillOptions(),
) -> DistillResult:
    """Train a student classifier on ``train`` against ``teacher`` (loss in the module docstring).

    ``teacher``/``student`` are Keras 3 models or .keras/.h5 paths with one image input and one
    ``[N, classes]`` output; ``student=None`` means :func:`edgecv.converters.student.narrow_copy` of the teacher at
    ``width``. ``train`` is anything :func:`edgecv.converters.train_data.open_training_data` reads, preprocessed
    with ``preprocess``. A hint given as one name uses that layer name on both sides. Returns a
    :class:`DistillResult` whose ``model`` is a new functional model; bad arguments raise
    :class:`edgecv.errors.ConfigError` (data problems :class:`edgecv.errors.InputError`) before training.
    """
    start = time.perf_counter()
    _check_numbers(width=width, temperature=temperature, alpha=alpha, epochs=epochs, batch_size=batch_size)
    pairs = _hint_pairs(hints)
    import_tensorflow()
    teacher = load_keras(teacher, "teacher")
    input_shape, classes = _classifier_shape(teacher, "teacher")
    if student is None:
        student = narrow_copy(teacher, width=width, seed=seed)
    else:
        student = _copy(load_keras(student, "student"))
    s_shape, s_classes = _classifier_shape(student, "student")
    if s_shape != input_shape:
        raise ConfigError(f"teacher input shape {input_shape} and student input shape {s_shape} differ")
    if s_classes != classes:
        raise ConfigError(f"teacher has {classes} classes and student {s_classes}; they must match")
    for t_name, s_name in pairs:
        _layer(teacher, t_name, "teacher")
        _layer(student, s_name, "student")
    if len(input_shape) != 3 or None in input_shape:
        raise ConfigError(f"teacher input shape {input_shape}: expected a fixed (height, width, channels) image")
    data = open_training_data(train, input_shape=input_shape, preprocess=preprocess,
                              validation=options.validation, seed=seed, limit=options.limit)
    if data.classes > classes:
        raise InputError(f"training labels go up to {data.classes - 1} but the teacher has {classes} classes")
    log.info("distilling %s (%d params) into %s (%d params) on %s", teacher.name, teacher.count_params(),
             student.name, student.count_params(), data.description)

    import keras

    keras.utils.set_random_seed(seed)
    frozen = _copy(teacher)
    frozen.trainable = False
    sample = data.x[: min(len(data.x), 32)]
    t_view, t_head = _view(frozen, [_layer(frozen, t, "teacher").output for t, _ in pairs], sample, options, "teacher")
    s_view, s_head = _view(student, [_layer(student, s, "student").output for _, s in pairs], sample, options, "student")
    adapters = [
        hint_adapter(tuple(t_out.shape), tuple(s_out.shape), name=f"hint_adapter_{i}", hint=pair)
        for i, (pair, t_out, s_out) in enumerate(zip(pairs, t_view.outputs[:-1], s_view.outputs[:-1]))
    ]
    distiller = _distiller_class()(
        student, frozen, s_view, t_view, s_head, t_head, [a or keras.layers.Identity() for a in adapters],
        temperature=temperature, alpha=alpha, hint_weight=options.hint_weight,
    )
    train_set = _train_set(data, t_view, t_head, pairs, batch_size=batch_size, seed=seed)
    distiller.compile(optimizer=keras.optimizers.Adam(_learning_rate(options, train_set, epochs)))
    history = distiller.fit(
        train_set,
        validation_data=(data.x_val, data.y_val) if len(data.x_val) else None, validation_batch_size=256,
        epochs=epochs, shuffle=False, verbose=0, callbacks=[_epoch_logger(epochs)],  # the set shuffles itself
    )
    result = DistillResult(
        model=student,
        top1_teacher=_top1(teacher, data),
        top1_student=_top1(student, data),
        params_teacher=int(teacher.count_params()),
        params_student=int(student.count_params()),
        history={k: [float(v) for v in vs] for k, vs in history.history.items()},
        seconds=time.perf_counter() - start,
    )
    log.info("distilled: %s", result.summary())
    return result


def kd_loss(student_logits, teacher_logits, labels, *, temperature: float = 4.0, alpha: float = 0.1):
    """``(loss, ce, kd)`` for one batch as in the module docstring, without hints; ``kd`` includes T**2.

    Example:
        >>> z = np.array([[2.0, 0.0, -1.0]], np.float32)
        >>> [round(float(v), 4) for v in kd_loss(z, z, np.array([0]), temperature=2.0, alpha=0.5)]
        [0.0849, 0.1698, 0.0]
    """
    import_tensorflow()
    from keras import ops

    student_logits = ops.convert_to_tensor(student_logits, "float32")
    teacher_logits = ops.convert_to_tensor(teacher_logits, "float32")
    ce = ops.mean(ops.sparse_categorical_crossentropy(labels, student_logits, from_logits=True))
    log_pt = ops.log_softmax(teacher_logits / temperature, axis=-1)
    log_ps = ops.log_softmax(student_logits / temperature, axis=-1)
    kd = temperature**2 * ops.mean(ops.sum(ops.exp(log_pt) * (log_pt - log_ps), axis=-1))
    return alpha * ce + (1.0 - alpha) * kd, ce, kd


def hint_adapter(teacher_shape: tuple, student_shape: tuple, *, name: str = "hint_adapter", hint: Any = None):
    """The trainable layer mapping a student hint output to the teacher's channels, or None when they match.

    Shapes include the batch: 4-D NHWC outputs need the same height and width (a 1x1 Conv2D), 2-D
    outputs get a Dense. Example:
        >>> hint_adapter((None, 8, 8, 16), (None, 8, 8, 8)).compute_output_shape((None, 8, 8, 8))  # doctest: +SKIP
        (None, 8, 8, 16)
    """
    import_tensorflow()
    import keras

    what = f"hint {hint}" if hint else "hint"
    if len(teacher_shape) != len(student_shape) or len(teacher_shape) not in (2, 4):
        raise ConfigError(f"{what}: teacher output {teacher_shape} and student output {student_shape}: "
                          "expected both 2-D or both 4-D NHWC")
    if teacher_shape[1:-1] != student_shape[1:-1]:
        raise ConfigError(f"{what}: teacher output {teacher_shape} and student output {student_shape} "
                          "differ in height/width")
    if teacher_shape[-1] == student_shape[-1]:
        return None
    layer = keras.layers.Conv2D(teacher_shape[-1], 1, name=name) if len(teacher_shape) == 4 else keras.layers.Dense(teacher_shape[-1], name=name)
    layer.build(student_shape)
    return layer


# --- checks -------------------------------------------------------------------------------------------------


def _check_numbers(*, width, temperature, alpha, epochs, batch_size) -> None:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ConfigError(f"temperature: expected a finite value > 0, got {temperature}")
    if not (isinstance(alpha, (int, float)) and 0 <= alpha <= 1):
        raise ConfigError(f"alpha: expected a value in [0, 1], got {alpha}")
    if not (isinstance(width, (int, float)) and width > 0):
        raise ConfigError(f"width: expected a value > 0, got {width}")
    for key, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not (isinstance(value, int) and value >= 1):
            raise ConfigError(f"{key}: expected a whole number >= 1, got {value}")


def _hint_pairs(hints) -> list[tuple[str, str]]:
    if isinstance(hints, str):
        hints = [hints]
    pairs = []
    for h in hints:
        if isinstance(h, str):
            h = (h, h)
        if not (isinstance(h, (tuple, list)) and len(h) == 2 and all(isinstance(n, str) for n in h)):
            raise ConfigError(f"hints: expected (teacher_layer, student_layer) name pairs, got {h!r}")
        pairs.append((h[0], h[1]))
    return pairs


def _classifier_shape(model, what: str) -> tuple[tuple, int]:
    """``(input shape without batch, class count)``; ConfigError unless one input and one [N, classes] output."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ConfigError(f"{what} {model.name}: expected one input and one output, got "
                          f"{len(model.inputs)} and {len(model.outputs)}")
    out = tuple(model.outputs[0].shape)
    if len(out) != 2 or out[-1] is None:
        raise ConfigError(f"{what} {model.name}: expected an [N, classes] output, got {out}")
    return tuple(model.inputs[0].shape[1:]), int(out[-1])


def _layer(model, name: str, what: str):
    try:
        layer = model.get_layer(name)
    except ValueError:
        names = ", ".join(layer.name for layer in model.layers)
        raise ConfigError(f"hint layer {name!r} is not in {what} {model.name}; available: {names}") from None
    try:
        layer.output  # noqa: B018 - raises when the layer was called more than once
    except (AttributeError, ValueError):
        raise ConfigError(f"hint layer {name!r} of {what} {model.name} has no single output") from None
    return layer


# --- models -------------------------------------------------------------------------------------------------


def _copy(model):
    """A new model with ``model``'s architecture and weights (the original is never trained)."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def _is_softmax(fn) -> bool:
    return getattr(fn, "__name__", "") == "softmax"


def _view(model, hint_outputs: list, sample: np.ndarray, options: DistillOptions, what: str):
    """``(view, head)``: ``view`` is a functional model over ``model``'s layers giving the hint outputs and a
    last tensor that ``head`` turns into logits (see the module docstring)."""
    import keras

    out = model.outputs[0]
    op = out._keras_history.operation
    head: Callable = _identity
    if isinstance(op, keras.layers.Softmax) or (isinstance(op, keras.layers.Activation) and _is_softmax(op.activation)):
        tensor, how = op.input, f"the input of its softmax layer {op.name!r}"
    elif isinstance(op, keras.layers.Dense) and _is_softmax(op.activation):
        tensor, how, head = op.input, f"its last layer {op.name!r} without the softmax", functools.partial(_dense_logits, op)
    elif _sums_to_one(np.asarray(model(sample, training=False)), options.probs_atol):
        tensor, how, head = out, "log-probabilities of its output", _log_probs
    else:
        tensor, how = out, "its output, taken as logits"
    log.info("%s %s: logits from %s", what, model.name, how)
    return keras.Model(model.inputs, [*hint_outputs, tensor], name=f"{what}_view"), head


def _identity(t):
    return t


def _dense_logits(layer, h):
    from keras import ops

    z = ops.matmul(h, layer.kernel)
    return ops.add(z, layer.bias) if layer.use_bias else z


def _log_probs(p):
    from keras import ops

    return ops.log(ops.maximum(p, 1e-30))


def _sums_to_one(y: np.ndarray, atol: float) -> bool:
    return bool(len(y)) and bool(np.all(y >= 0)) and bool(np.allclose(y.sum(axis=-1), 1.0, atol=atol))


def _train_set(data: TrainingData, t_view, t_head, pairs, *, batch_size: int, seed: int):
    """Batches of ``(x, y)``; without hints ``y`` is ``{"label", "teacher"}`` with the teacher's logits computed once."""
    if pairs or data.source is not None:
        return data.dataset(batch_size, seed=seed)
    import tensorflow as tf

    outs = t_view.predict(data.x, batch_size=256, verbose=0)
    logits = np.asarray(t_head(outs[-1] if isinstance(outs, list) else outs), np.float32)
    ds = tf.data.Dataset.from_tensor_slices((data.x, {"label": data.y, "teacher": logits}))
    return ds.shuffle(len(data.x), seed=seed, reshuffle_each_iteration=True).batch(batch_size).prefetch(2)


def _learning_rate(options: DistillOptions, train_set, epochs: int):
    steps = int(train_set.cardinality())
    if not options.cosine or steps <= 0:  # unknown (-2) or infinite (-1) dataset: constant rate
        return options.learning_rate
    import keras

    return keras.optimizers.schedules.CosineDecay(options.learning_rate, decay_steps=steps * epochs)


def _top1(model, data: TrainingData) -> float:
    if len(data.x_val) == 0:
        return float("nan")
    scores = model.predict(data.x_val, batch_size=256, verbose=0)
    return float(np.mean(np.argmax(scores, axis=-1) == data.y_val))


@functools.cache
def _distiller_class():
    """The Keras model that trains the student against the frozen teacher (defined on first use: Keras is
    imported lazily)."""
    import_tensorflow()
    import keras
    from keras import ops

    class Distiller(keras.Model):
        """Owns the student, the frozen teacher copy and the hint adapters; ``fit`` trains the student."""

        def __init__(self, student, teacher, student_view, teacher_view, student_head, teacher_head, adapters, *,
                     temperature: float, alpha: float, hint_weight: float):
            super().__init__(name="distiller")
            self.student = student  # tracked whole: the classifier layer may sit outside student_view
            self.teacher = teacher
            self.student_view = student_view
            self.teacher_view = teacher_view
            self.adapters = adapters
            self.student_head, self.teacher_head = student_head, teacher_head
            self.temperature, self.alpha, self.hint_weight = float(temperature), float(alpha), float(hint_weight)
            self.ce_tracker = keras.metrics.Mean(name="ce")
            self.kd_tracker = keras.metrics.Mean(name="kd")
            self.hint_tracker = keras.metrics.Mean(name="hint")
            self.top1_tracker = keras.metrics.SparseCategoricalAccuracy(name="top1")

        def call(self, x, training=False):
            out = self.student_view(x, training=training)
            return list(out) if isinstance(out, (list, tuple)) else [out]

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            if isinstance(y, dict):  # teacher logits computed before training
                labels, t_logits, t_hints = y["label"], y["teacher"], []
            else:
                t_out = self.teacher_view(x, training=False)
                t_out = list(t_out) if isinstance(t_out, (list, tuple)) else [t_out]
                labels, t_logits, t_hints = y, self.teacher_head(t_out[-1]), t_out[:-1]
            s_logits = self.student_head(y_pred[-1])
            loss, ce, kd = kd_loss(s_logits, ops.stop_gradient(t_logits), labels,
                                   temperature=self.temperature, alpha=self.alpha)
            hint = ops.convert_to_tensor(0.0)
            for adapter, s, t in zip(self.adapters, y_pred[:-1], t_hints):
                hint = hint + ops.mean(ops.square(adapter(s) - ops.stop_gradient(t)))
            self.ce_tracker.update_state(ce)
            self.kd_tracker.update_state(kd)
            self.hint_tracker.update_state(hint)
            self.top1_tracker.update_state(labels, s_logits)
            return loss + self.hint_weight * hint

    return Distiller


@functools.cache
def _log_epochs_class():
    import keras

    class LogEpochs(keras.callbacks.Callback):
        def __init__(self, epochs: int):
            super().__init__()
            self.epochs = epochs

        def on_epoch_end(self, epoch, logs=None):
            figures = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items())
            log.info("epoch %d/%d: %s", epoch + 1, self.epochs, figures)

    return LogEpochs


def _epoch_logger(epochs: int):
    return _log_epochs_class()(epochs)


__all__ = ["DistillOptions", "DistillResult", "distill", "kd_loss", "hint_adapter"]
