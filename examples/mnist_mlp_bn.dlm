# examples/mnist_mlp_bn.dlm — the MNIST perceptron with batch norm, dropout, L2 and max-norm.
model mnist_mlp_bn {
  input x: f32[B, 784]
  input y: i32[B]

  h = x |> dense(256) |> batch_norm |> relu |> dropout(0.2) |> dense(128) |> batch_norm |> relu |> dropout(0.2)
  logits = dense(h, 10)

  output probs = softmax(logits)
  output pred = argmax(logits, axis: -1)
  loss = softmax_cross_entropy(logits, y)
  metric accuracy = mean(pred == y)

  train {
    optimizer adam(lr: 1e-3)
    schedule step_decay(factor: 0.5, every: 5)
    regularize l2(1e-5) on weights
    constrain max_norm(4.0) on weights
    clip global_norm(5.0)
    batch 64
    epochs 5
    seed 7
  }
}
