# Learning-rate schedules: lr(lr0, epoch, step), with epoch counting completed epochs and step
# counting updates taken, both from 0.

schedule constant() { lr(lr0, epoch, step) = lr0 }
schedule step_decay(factor = 0.1, every = 10) { lr(lr0, epoch, step) = lr0 * factor ^ floor(epoch / every) }

# max(lr0 * rate^epoch, min_lr)
schedule exponential_decay(rate = 0.96, min_lr = 0.0) { lr(lr0, epoch, step) = max(lr0 * rate ^ epoch, min_lr) }

# (1 - k) * lr0 + k * final with k = step / tau, then final from step tau on.
schedule linear_decay(tau = 1000, final = 0.0) {
  lr(lr0, epoch, step) {
    k = min(step / tau, 1.0)
    return (1 - k) * lr0 + k * final
  }
}

# Cosine annealing restarted every `period` epochs (SGDR).
schedule cosine_restarts(period = 10, min_lr = 0.0) {
  lr(lr0, epoch, step) {
    x = epoch / period
    return min_lr + 0.5 * (lr0 - min_lr) * (1 + cos(3.141592653589793 * (x - floor(x))))
  }
}

# Linear warmup from lr0 / steps up to lr0 over the first `steps` updates.
schedule warmup(steps = 1000) { lr(lr0, epoch, step) = lr0 * min(1.0, (step + 1) / steps) }

# Reduce the learning rate when a watched number stops improving (Keras's ReduceLROnPlateau). It
# depends on validation results, which lr(lr0, epoch, step) cannot see, so the training loop
# (`dlc train`, runtime/train.ts) applies it: after `patience` epochs without improvement of the
# train block's early_stop value (else val.loss, or train.loss without a validation set), it
# multiplies the optimizer's lr by `factor`, never going below `min_lr`.
schedule reduce_on_plateau(factor = 0.1, patience = 2, min_lr = 0.0) { lr(lr0, epoch, step) = lr0 }
