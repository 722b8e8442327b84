"""StyleGAN training losses (NVIDIA's recipe): logistic GAN losses, R1, path-length regulariser.

All images are NCHW float32 in [-1, 1]; scores are D's raw logits ``[N, 1]``. Every function returns
per-sample values ``[N]`` (the caller divides their sum by the global batch, so gradients summed
over replicas equal the mean over the whole batch). ``augment_fn`` is the ADA pipeline (or the
identity): D sees every image through it, and R1 differentiates through it.

* G: non-saturating logistic, ``softplus(-D(G(z)))``.
* D: logistic, ``softplus(D(G(z))) + softplus(-D(x))``.
* R1: ``gamma/2 * ||dD(x)/dx||^2`` on reals, summed over C, H, W.
* Path length (StyleGAN2/ADA, G): ``L = sqrt(mean_layers(sum_w (d sum(G(w)*y) / dw)^2))`` with
  ``y ~ N(0, 1)/sqrt(H*W)``; the running mean ``a += decay*(mean(L) - a)``; penalty ``weight*(L - a)^2``.
* Lazy regularisation: a regulariser evaluated every ``I`` minibatches is multiplied by ``I`` (by the
  caller), and Adam runs with ``lr*c, beta1^c, beta2^c``, ``c = I/(I+1)``
  (:func:`stylegan_tl.recipe.lazy_adam`).
"""

import tensorflow as tf


def _identity(images):
    return images


def g_nonsaturating(fake_scores):
    """Generator loss per sample: ``softplus(-D(G(z)))`` ([N, 1] scores -> [N])."""
    return tf.reshape(tf.nn.softplus(-fake_scores), [-1])


def d_logistic(real_scores, fake_scores):
    """Discriminator loss per sample: ``softplus(D(fake)) + softplus(-D(real))`` -> [N]."""
    return tf.reshape(tf.nn.softplus(fake_scores) + tf.nn.softplus(-real_scores), [-1])


def r1_penalty(D, reals, labels, gamma, augment_fn=_identity):
    """R1 on reals, through the augmentation.

    Args:
        D: discriminator Network (``get_output_for(images, labels) -> [N, 1]``).
        reals: float32 [N, C, H, W] NCHW real images.
        labels: [N, label_size] or None.
        gamma: R1 weight.
        augment_fn: images -> images (differentiable), applied before D.
    Returns:
        (penalty [N] = gamma/2 * sum_{C,H,W} (dD/dx)^2, real scores [N, 1]).
    """
    with tf.GradientTape() as tape:
        tape.watch(reals)
        real_scores = D.get_output_for(augment_fn(reals), labels)
        total = tf.reduce_sum(tf.cast(real_scores, tf.float32))
    grads = tape.gradient(total, reals)
    return tf.reduce_sum(tf.square(grads), axis=[1, 2, 3]) * (gamma * 0.5), real_scores


def path_lengths(G, latents, labels, seed, replica=(0, 1), **g_kwargs):
    """Per-sample path lengths ``L = sqrt(mean_layers(sum_w g^2))``, ``g = d sum(G(w) y) / dw``.

    Args:
        G: generator Network (``get_output_for(latents, labels, return_dlatents=True, ...)``).
        latents: [N, latent_size]; labels: [N, L] or None.
        seed: int [2] tensor for the noise images ``y ~ N(0, 1)/sqrt(H*W)`` (stateless).
        replica: (index, count): ``y`` is slice ``index`` of the draw for ``count * N`` images, so
            a batch split over replicas sees the same noise as on one device.
        g_kwargs: G's dynamic kwargs (is_training, style_mixing_prob, ...).
    Returns:
        [N] float32 lengths.
    """
    with tf.GradientTape() as tape:
        tape.watch(latents)  # records the ops from the latents on, so dlatents is on the tape
        images, dlatents = G.get_output_for(latents, labels, return_dlatents=True, **g_kwargs)
        images = tf.cast(images, tf.float32)
        shape = tf.shape(images)
        index, count = replica
        noise = tf.random.stateless_normal(tf.concat([[shape[0] * count], shape[1:]], 0), seed)
        noise = noise[shape[0] * index:shape[0] * (index + 1)] / tf.sqrt(tf.cast(shape[2] * shape[3], tf.float32))
        total = tf.reduce_sum(images * noise)
    grads = tape.gradient(total, dlatents)
    return tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(grads), axis=2), axis=1))


def path_length_penalty(lengths, pl_mean, batch_mean_length, decay=0.01, weight=2.0):
    """Path-length penalty per sample and the new running mean.

    Args:
        lengths: [N] from :func:`path_lengths`.
        pl_mean: current running mean ``a`` (scalar; starts at 0).
        batch_mean_length: mean of ``lengths`` over the whole (global) batch.
        decay: ``pl_decay`` (0.01); weight: ``pl_weight`` (2).
    Returns:
        (penalty [N] = weight * (L - a_new)^2, a_new = a + decay * (batch_mean - a)).
    """
    new_mean = pl_mean + decay * (batch_mean_length - pl_mean)
    return weight * tf.square(lengths - new_mean), new_mean
