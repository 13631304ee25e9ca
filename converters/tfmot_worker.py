"""The child process of tfmot's weight methods: tfmot needs tf_keras (Keras 2), and importing it flips the
whole process to legacy Keras, so magnitude and 2:4 pruning and weight clustering run here, never in the
caller's process.

The parent (:mod:`edgecv.converters.tfmot_job`) saves its Keras 3 model with
:mod:`edgecv.converters.tfkeras_rebuild` and the data as ``.npz`` in a job folder and runs this module with
:func:`edgecv.child.call`. The child rebuilds the model in tf_keras (the weight copy checked exact), wraps every
Conv2D and Dense in ``prune_low_magnitude`` (modes ``magnitude``, ``2:4``) or ``cluster_weights`` (mode
``cluster``: k-means++ centroids, optionally keeping the zeros of a pruned kernel), fine-tunes, strips the
wrappers and writes the weights back, with its predictions on a few inputs so the parent can check its own
copy; the fine-tuning history and the wrapped layers' names are its result.

Example:
    >>> run_job(Path("job"))["layers"]        # doctest: +SKIP   (child side, TF_USE_LEGACY_KERAS=1)
    ['conv1', 'conv2', 'dense']
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from edgecv.child import serve


log = logging.getLogger(__name__)

WRAPPED = ("Conv2D", "Dense")  # the layers whose kernels are pruned or clustered
MODES = ("magnitude", "2:4", "cluster")


def schedule(mode: str, sparsity: float, total_steps: int, end_fraction: float):
    """The tfmot pruning schedule: the target is reached at ``end_fraction`` of the steps (polynomial decay
    for magnitude; masks recomputed until then for 2:4), then kept while fine-tuning goes on."""
    import tensorflow_model_optimization as tfmot

    end = min(total_steps - 1, int(round(end_fraction * total_steps)))
    if end < 1:
        return tfmot.sparsity.keras.ConstantSparsity(sparsity, begin_step=0, end_step=-1, frequency=1)
    frequency = max(1, end // 10)
    end = end // frequency * frequency
    if mode == "2:4":
        return tfmot.sparsity.keras.ConstantSparsity(0.5, begin_step=0, end_step=end, frequency=frequency)
    return tfmot.sparsity.keras.PolynomialDecay(0.0, sparsity, begin_step=0, end_step=end, frequency=frequency)


def _wrapper(job: dict, steps: int):
    """The tfmot wrapper of one layer for the job's mode, and the strip function and callbacks that go with it."""
    import tensorflow_model_optimization as tfmot

    if job["mode"] == "cluster":
        init = tfmot.clustering.keras.CentroidInitialization.KMEANS_PLUS_PLUS

        def wrap(layer):
            if int(np.prod(layer.get_weights()[0].shape)) <= job["clusters"]:
                return None  # no more weights than clusters: already shared (k-means++ would refuse it)
            return tfmot.clustering.keras.cluster_weights(layer, number_of_clusters=job["clusters"],
                                                          cluster_centroids_init=init,
                                                          preserve_sparsity=job["preserve_sparsity"])

        return wrap, tfmot.clustering.keras.strip_clustering, []
    plan = schedule(job["mode"], job["sparsity"], steps, job["end_fraction"])
    m_by_n = (2, 4) if job["mode"] == "2:4" else None

    def wrap(layer):
        return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=plan, sparsity_m_by_n=m_by_n)

    return wrap, tfmot.sparsity.keras.strip_pruning, [tfmot.sparsity.keras.UpdatePruningStep()]


def run_job(job_dir: Path) -> dict:
    """Rebuild, wrap, fine-tune, strip and write ``result.npz`` and ``check.npy`` in ``job_dir``; returns the
    history and the wrapped layers' names."""
    import tensorflow as tf
    import tf_keras

    tf.get_logger().setLevel(logging.ERROR)
    from edgecv.converters import tfkeras_rebuild

    job = json.loads((job_dir / "job.json").read_text())
    model = tfkeras_rebuild.rebuild(*tfkeras_rebuild.load(job_dir / "model"))  # checks the weight copy is exact
    with np.load(job_dir / "data.npz") as f:
        x, y, x_check = f["x"], f["y"], f["x_check"]

    tf_keras.utils.set_random_seed(job["seed"])
    # Whole batches only (reshuffled every epoch): a short last batch would trace the wrapped train step
    # a second time, which costs seconds.
    whole = len(x) >= job["batch_size"]
    steps = (len(x) // job["batch_size"] if whole else 1) * job["epochs"]
    wrap_layer, strip, callbacks = _wrapper(job, steps)
    wrapped_names = []

    def wrap(layer):
        new = wrap_layer(layer) if type(layer).__name__ in WRAPPED else None
        if new is None:
            return layer
        wrapped_names.append(layer.name)
        return new

    wrapped = tf_keras.models.clone_model(model, clone_function=wrap)
    wrapped.compile(optimizer=tf_keras.optimizers.Adam(job["lr"]),
                    loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=job["from_logits"]),
                    metrics=["accuracy"])
    ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=job["seed"]).batch(job["batch_size"], drop_remainder=whole)
    history = wrapped.fit(ds, epochs=job["epochs"], verbose=0, callbacks=callbacks)
    final = strip(wrapped)
    out = {}
    for layer in final.layers:
        for i, w in enumerate(layer.get_weights()):
            out[f"{layer.name}:{i}"] = w
    np.savez(job_dir / "result.npz", **out)
    np.save(job_dir / "check.npy", np.asarray(final(x_check, training=False)))
    return {
        "history": {k: [float(v) for v in vals] for k, vals in history.history.items()},
        "layers": wrapped_names,
    }


if __name__ == "__main__":  # the worker process (edgecv.child)
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    serve(lambda request: run_job(Path(request["job"])))
