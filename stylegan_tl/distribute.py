"""Where training runs and how updates reach the variables: strategy choice and a distributed Adam.

* :func:`make_strategy` picks ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names several
  workers, ``MirroredStrategy`` over all GPUs when there are several (or over ``cpu_devices``
  logical CPU devices, for tests), and TF's default strategy otherwise.
* :class:`Adam` is NVIDIA's optimiser (Adam with bias correction; beta1 0, beta2 0.99, eps 1e-8 by
  default) written against ``tf.distribute``: per-replica gradients are summed across replicas
  (``batch_reduce_to``) onto the variables' devices and every copy is updated in place
  (``extended.update``). As NVIDIA's ``tflib.Optimizer``, a step whose gradients are not all finite
  is skipped. Optional dynamic loss scaling (mixed precision) also halves the scale after such a
  step and doubles it after 2000 finite ones; it starts at 1, as NVIDIA's ADA trains its float16
  layers unscaled, and grows only while the gradients stay finite. Its slots are ordinary variables, saved and restored
  by variable name (:meth:`Adam.state_dict`).
"""

import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from .errors import StyleGANTLError


def configure_cpu_devices(count: int):
    """Split the CPU into ``count`` logical devices; must run before TensorFlow initialises."""
    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as e:
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise StyleGANTLError(f"cannot create {count} logical CPU devices after TensorFlow has "
                                  f"initialised ({e}); set them up first or run in a fresh process")


def make_strategy(cpu_devices: int = 0) -> tf.distribute.Strategy:
    """Choose the ``tf.distribute`` strategy (see the module docstring)."""
    workers = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {}).get("worker", [])
    if len(workers) > 1:
        logging.info("MultiWorkerMirroredStrategy over %d workers (TF_CONFIG)", len(workers))
        return tf.distribute.MultiWorkerMirroredStrategy()
    if cpu_devices and cpu_devices > 1:
        configure_cpu_devices(cpu_devices)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:cpu_devices]
        logging.info("MirroredStrategy over %d logical CPU devices", len(devices))
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        logging.info("MirroredStrategy over %d GPUs", len(gpus))
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _adam_update(var, grad, m, v, step, lr, beta1, beta2, epsilon, finite):
    """One in-place Adam step of one variable copy (all arguments local to its device)."""
    grad = tf.where(finite, tf.cast(grad, var.dtype), tf.zeros_like(var))
    t = tf.cast(step + 1, tf.float32)
    new_m = beta1 * m + (1 - beta1) * grad
    new_v = beta2 * v + (1 - beta2) * tf.square(grad)
    rate = lr * tf.sqrt(1 - tf.pow(beta2, t)) / (1 - tf.pow(beta1, t))
    new_var = var - rate * new_m / (tf.sqrt(new_v) + epsilon)
    return tf.group(m.assign(tf.where(finite, new_m, m)), v.assign(tf.where(finite, new_v, v)),
                    var.assign(tf.where(finite, new_var, var)))


class Adam(tf.Module):
    """Adam over a fixed, named set of variables, usable under any ``tf.distribute`` strategy.

    Create it inside ``strategy.scope()`` (the slots are then mirrored like the variables).

    Args:
        variables: OrderedDict name -> tf.Variable to optimise (the names key the saved state).
        lr, beta1, beta2, epsilon: Adam settings (already lazy-regularisation adjusted).
        loss_scaling: dynamic loss scaling (mixed precision): the caller multiplies its loss by
            :attr:`loss_scale` and passes the scaled gradients.
    """

    def __init__(self, variables, lr, beta1=0.0, beta2=0.99, epsilon=1e-8, loss_scaling=False, name="Adam"):
        super().__init__(name=name)
        self.strategy = tf.distribute.get_strategy()
        self.names = list(variables)
        self.variables_ = list(variables.values())
        self.lr, self.beta1, self.beta2, self.epsilon = float(lr), float(beta1), float(beta2), float(epsilon)
        self.loss_scaling = loss_scaling
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False, name=f"{name}_m") for v in self.variables_]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False, name=f"{name}_v") for v in self.variables_]
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{name}_step")
        self.scale = tf.Variable(1.0, trainable=False, name=f"{name}_scale")
        self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{name}_good")

    @property
    def loss_scale(self):
        return self.scale

    def apply(self, per_replica_grads):
        """Sum per-replica gradients over replicas and update (call in cross-replica context).

        ``per_replica_grads``: list aligned with the variables (per-replica values from
        ``strategy.run``, or plain tensors under the default strategy). Returns whether the step
        was applied (False when a gradient was not finite: nothing changes but the loss scale).
        """
        strategy = self.strategy
        grads = strategy.extended.batch_reduce_to(
            tf.distribute.ReduceOp.SUM, list(zip(per_replica_grads, self.variables_)))
        if self.loss_scaling:
            grads = [g / self.scale for g in grads]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
        for var, grad, m, v in zip(self.variables_, grads, self.m, self.v):
            strategy.extended.update(var, _adam_update, args=(grad, m, v, self.step, self.lr, self.beta1,
                                                              self.beta2, self.epsilon, finite), group=True)
        self.step.assign_add(tf.cast(finite, tf.int64))
        if self.loss_scaling:
            self._adjust_scale(finite)
        return finite

    def _adjust_scale(self, finite):
        """Halve the scale after a non-finite step (down to 2^-16); double it after 2000 finite ones."""
        good = tf.where(finite, self.good_steps + 1, 0)
        grow = good >= 2000
        self.scale.assign(tf.where(finite, tf.where(grow, self.scale * 2, self.scale), tf.maximum(self.scale / 2, 2.0 ** -16)))
        self.good_steps.assign(tf.where(grow, tf.zeros_like(good), good))

    def state_dict(self, prefix):
        """numpy arrays keyed ``<prefix>/m/<var name>``, ``<prefix>/v/<var name>``, ``<prefix>/step``..."""
        state = {f"{prefix}/step": self.step.numpy(), f"{prefix}/scale": self.scale.numpy(),
                 f"{prefix}/good_steps": self.good_steps.numpy()}
        for name, m, v in zip(self.names, self.m, self.v):
            state[f"{prefix}/m/{name}"] = m.numpy()
            state[f"{prefix}/v/{name}"] = v.numpy()
        return state

    def load_state_dict(self, state, prefix):
        """Restore from :meth:`state_dict` output; a missing slot (e.g. a changed Freeze-D) stays zero."""
        for key in ("step", "scale", "good_steps"):
            if f"{prefix}/{key}" in state:
                getattr(self, key).assign(np.asarray(state[f"{prefix}/{key}"]))
        missing = 0
        for name, m, v in zip(self.names, self.m, self.v):
            if f"{prefix}/m/{name}" in state and state[f"{prefix}/m/{name}"].shape == tuple(m.shape):
                m.assign(state[f"{prefix}/m/{name}"])
                v.assign(state[f"{prefix}/v/{name}"])
            else:
                missing += 1
        if missing:
            logging.warning("%s: %d optimizer slot(s) not in the saved state; starting them at zero", prefix, missing)
