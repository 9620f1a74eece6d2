# examples/lenet5.dlm — LeNet-5 (LeCun et al. 1998) on MNIST, with relu and max pooling. On the
# 8,000 training digits of --data mnist it overfits without help: dropout on the flattened
# features, L2 on the weights and a halving learning rate keep it generalizing.
model lenet5 {
  input x: f32[B, 28, 28, 1]
  input y: i32[B]

  c1 = x |> conv2d(6, kernel: 5, padding: "same") |> relu |> max_pool2d(2)  # 14 x 14 x 6
  c2 = c1 |> conv2d(16, kernel: 5) |> relu |> max_pool2d(2)  # 5 x 5 x 16
  f = flatten(c2) |> dropout(0.25) |> dense(120) |> relu |> dense(84) |> relu
  logits = dense(f, 10)

  output probs = softmax(logits)
  output pred = argmax(logits, axis: -1)
  loss = softmax_cross_entropy(logits, y)
  metric accuracy = mean(pred == y)

  train {
    optimizer adam(lr: 1e-3)
    schedule step_decay(factor: 0.5, every: 4)
    regularize l2(1e-4) on weights
    batch 32
    epochs 10
    seed 2
  }
}
