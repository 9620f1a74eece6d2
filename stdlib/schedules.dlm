# Learning-rate schedules: lr(lr0, epoch, step).

schedule constant() { lr(lr0, epoch, step) = lr0 }
schedule step_decay(factor = 0.1, every = 10) { lr(lr0, epoch, step) = lr0 * factor ^ floor(epoch / every) }
