"""SOAP's preconditioner for one parameter tensor (Vyas et al. 2024, "SOAP: Improving
and Stabilizing Shampoo using Adam", arXiv 2409.11321), as Cool-chic 5 uses it for the
decoder networks' weights.

For a tensor of rank >= 2 and each of its axes (of size <= `max_dim`), SOAP keeps an
exponential average of G G^T contracted over the other axes, and its eigenvectors Q (an
`eigh` at the first step, then one power-iteration step and a QR every few steps). Adam
runs in the rotated space: the gradient and the first moment are rotated by the Q's, the
second moment is accumulated there, and the update is rotated back. The matrices here are
at most 48 x 48, so eigendecompositions are cheap.

    pre = Preconditioner(kernel.shape, beta=0.95)
    # step 1: pre.accumulate(grad); pre.refresh(first=True): no moments, no update
    # later steps, in SOAP's reference order:
    update = pre.rotate(adam_direction(pre.rotate(m), v), back=True)  # v: rotated grad^2
    pre.accumulate(grad)  # after the update: a gradient never rotates itself
    pre.refresh(first=False, second_moment=v)  # every few steps

The order matters (`models.c3.fit.C3Fitter._adam_update`): with the statistics and the
basis refreshed from the current gradient before rotating it, a refresh at every step
fitted the kodim23 crop 29 % worse than every 10 steps; in the reference order, within
1 % of it (docs/c3.md).
"""

from functools import partial

import tensorflow as tf


class Preconditioner(tf.Module):
    """The per-axis statistics and eigenbases of one tensor."""

    def __init__(self, shape, beta: float = 0.95, max_dim: int = 256, name: str = "soap"):
        super().__init__(name=name)
        shape = [int(d) for d in shape]
        if len(shape) < 2:
            raise ValueError(f"SOAP preconditions tensors of rank >= 2, not shape {shape}.")
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta}.")
        self.shape, self.beta = shape, float(beta)
        # Axes larger than max_dim keep the identity (never here: the widths are <= 48).
        self.preconditioned = [d <= max_dim for d in shape]
        self.stats = [
            tf.Variable(tf.zeros([d, d]), trainable=False, name=f"stats_{a}")
            for a, d in enumerate(shape)
            if self.preconditioned[a]
        ]
        self.bases = [
            tf.Variable(tf.eye(d), trainable=False, name=f"basis_{a}")
            for a, d in enumerate(shape)
            if self.preconditioned[a]
        ]

    @property
    def state(self) -> list[tf.Variable]:
        return self.stats + self.bases

    def reset(self) -> None:
        for s in self.stats:
            s.assign(tf.zeros_like(s))
        for q in self.bases:
            q.assign(tf.eye(q.shape[0]))

    def _unfold(self, g: tf.Tensor, axis: int) -> tf.Tensor:
        perm = [axis] + [a for a in range(len(self.shape)) if a != axis]
        return tf.reshape(tf.transpose(g, perm), [self.shape[axis], -1])

    def accumulate(self, g: tf.Tensor) -> None:
        """stats_a <- beta stats_a + (1 - beta) G_(a) G_(a)^T for each axis a."""
        i = 0
        for axis, on in enumerate(self.preconditioned):
            if on:
                unfolded = self._unfold(g, axis)
                gram = tf.matmul(unfolded, unfolded, transpose_b=True)
                self.stats[i].assign(self.beta * self.stats[i] + (1.0 - self.beta) * gram)
                i += 1

    def refresh(self, first, second_moment: tf.Variable | None = None) -> None:
        """New eigenbases: exact at the first step, else one power iteration + QR.

        The columns of each basis are kept in descending order of their eigenvalues: an
        exact basis is sorted so, and before a power step the current basis is re-sorted
        by its estimated eigenvalues diag(Q^T S Q), as in SOAP's reference code. A power
        step whose QR starts from the smallest eigenvalues (`eigh`'s order) orthogonalises
        the large directions against noise (S q ~ 0 for the null space that a few
        gradients leave) and scrambles the basis at every refresh; Adam's second moment,
        kept in the rotated coordinates, then no longer matches them (a fit with a
        refresh every step diverged by step 100). `second_moment` (Adam's v for this
        tensor, in the rotated coordinates) is permuted with the columns, so each entry
        stays with its direction."""
        i = 0
        for axis, on in enumerate(self.preconditioned):
            if not on:
                continue
            s, q = self.stats[i], self.bases[i]
            i += 1
            # One branch runs: the eigh at the first step, the power step after it.
            order = tf.cond(first, partial(self._exact, s, q), partial(self._power_step, s, q))
            if second_moment is not None:
                second_moment.assign(tf.gather(second_moment, order, axis=axis))

    @staticmethod
    def _exact(s: tf.Variable, q: tf.Variable) -> tf.Tensor:
        """q <- the eigenvectors of s, descending; the columns' order: unchanged."""
        q.assign(tf.reverse(tf.linalg.eigh(s)[1], axis=[1]))  # eigh: ascending
        return tf.range(tf.shape(q)[1])

    @staticmethod
    def _power_step(s: tf.Variable, q: tf.Variable) -> tf.Tensor:
        """q <- QR(s q), q's columns first sorted by diag(q^T s q), descending; returns
        that order."""
        estimated = tf.reduce_sum(q * tf.matmul(s, q), axis=0)  # diag(Q^T S Q)
        order = tf.argsort(estimated, direction="DESCENDING", stable=True)
        q.assign(tf.linalg.qr(tf.matmul(s, tf.gather(q, order, axis=1)))[0])
        return order

    def rotate(self, x: tf.Tensor, back: bool = False) -> tf.Tensor:
        """x in the eigenbasis (x times Q_a along each axis a), or back from it."""
        i = 0
        for axis, on in enumerate(self.preconditioned):
            # tensordot over the first axis appends the new one last: after one pass per
            # axis the axes are back in their order.
            if on:
                q = self.bases[i]
                x = tf.tensordot(x, tf.transpose(q) if back else q, axes=[[0], [0]])
                i += 1
            else:
                x = tf.tensordot(x, tf.eye(self.shape[axis]), axes=[[0], [0]])
        return x
