# Losses, averaged over the batch, in their numerically stable forms.

# Integer labels [B] or one-hot rows [B, C]: mean of logsumexp(logits) - logit of the true class.
fn softmax_cross_entropy(logits, labels) = mean(logsumexp(logits, axis: -1) - pick(logits, labels))

fn mse(pred, target) = mean((pred - target) ^ 2)
