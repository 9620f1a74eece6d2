# examples/mnist_adamax.dlm — the MNIST perceptron trained by an optimizer and a schedule
# written here, not taken from the library: Adamax (Kingma & Ba, sec. 7.1) with a linear warmup
# followed by exponential decay.
optimizer adamax(lr = 2e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8) {
  state m = zeros
  state u = zeros
  step(p, g, t) {
    m <- beta1 * m + (1 - beta1) * g
    u <- max(beta2 * u, abs(g))
    p <- p - lr / (1 - beta1 ^ t) * m / (u + eps)
  }
}

schedule warmup_decay(warmup = 50, rate = 0.8) {
  lr(lr0, epoch, step) = lr0 * min(1.0, (step + 1) / warmup) * rate ^ epoch
}

model mnist_adamax {
  input x: f32[B, 784]
  input y: i32[B]

  h = x |> dense(256) |> relu |> dense(128) |> relu
  logits = dense(h, 10)

  output probs = softmax(logits)
  output pred = argmax(logits, axis: -1)
  loss = softmax_cross_entropy(logits, y)
  metric accuracy = mean(pred == y)

  train {
    optimizer adamax(lr: 2e-3)
    schedule warmup_decay(warmup: 50)
    batch 64
    epochs 3
    seed 7
  }
}
