import microgradnn as torch
# An LSTMClassifier trained with Adam on batches from a DataLoader over a TensorDataset,
# then evaluated under no_grad. Only the import line above changes between microgradnn
# and PyTorch.
import numpy as np

nn = torch.nn
TensorDataset = torch.utils.data.TensorDataset
DataLoader = torch.utils.data.DataLoader

VOCAB, SEQ_LEN, N, EPOCHS = 12, 10, 96, 4


class LSTMClassifier(nn.Module):
    def __init__(self, vocab_size, embedding_dim, hidden_dim, num_classes):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, batch_first=True)
        self.fc = nn.Linear(hidden_dim, num_classes)

    def forward(self, x):
        embedded = self.embedding(x)
        output, (hidden, cell) = self.lstm(embedded)
        return self.fc(hidden[-1])


rng = np.random.default_rng(1)
X = rng.integers(0, VOCAB, size=(N, SEQ_LEN))
y = ((X == 3).sum(axis=1) > (X == 7).sum(axis=1)).astype(np.int64)  # more 3s than 7s?
inputs, labels = torch.from_numpy(X), torch.from_numpy(y)
dataset = TensorDataset(inputs[:64], labels[:64])

model = LSTMClassifier(VOCAB, 8, 16, 2)
with torch.no_grad():  # the same initial weights in both libraries
    for name, p in sorted(model.named_parameters(), key=lambda item: item[0]):
        p.copy_(torch.from_numpy(rng.normal(0.0, 0.3, size=tuple(p.shape)).astype(np.float32)))
optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
criterion = nn.CrossEntropyLoss()

losses = []
for epoch in range(EPOCHS):
    order = rng.permutation(len(dataset)).tolist()  # our own shuffle: the same in both libraries
    loader = DataLoader(dataset, batch_size=16, sampler=order)
    model.train()
    for xb, yb in loader:
        optimizer.zero_grad()
        loss = criterion(model(xb), yb)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

model.eval()
with torch.no_grad():
    logits = model(inputs[64:])
    _, predicted = torch.max(logits, 1)
    accuracy = (predicted == labels[64:]).float().mean().item()
    losses.append(criterion(logits, labels[64:]).item())
