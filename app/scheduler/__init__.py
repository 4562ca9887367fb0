"""When to run the loop: enqueue reward-model training, policy training and the next sampling round."""
