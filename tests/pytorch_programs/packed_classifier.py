import microgradnn as torch
# A GRU classifier over variable-length sequences: a DataLoader with a padding collate_fn
# (pad_sequence), pack_padded_sequence into a bidirectional GRU, pad_packed_sequence of the
# output for a masked mean, SGD with momentum. Only the import line above changes between
# microgradnn and PyTorch.
import numpy as np

nn = torch.nn
rnn_utils = torch.nn.utils.rnn
DataLoader = torch.utils.data.DataLoader

FEATURES, N, EPOCHS = 3, 60, 3

rng = np.random.default_rng(2)
sequences, targets = [], []
for _ in range(N):
    length = int(rng.integers(2, 12))
    seq = rng.standard_normal((length, FEATURES)).astype(np.float32)
    sequences.append(torch.from_numpy(seq))
    targets.append(int(seq[:, 0].sum() > 0))
samples = list(zip(sequences, targets))


def collate(batch):
    seqs = [s for s, _ in batch]
    lengths = torch.tensor([len(s) for s in seqs])
    padded = rnn_utils.pad_sequence(seqs, batch_first=True)
    return padded, lengths, torch.tensor([t for _, t in batch])


class PackedClassifier(nn.Module):
    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(4 * hidden_size, num_classes)

    def forward(self, padded, lengths):
        packed = rnn_utils.pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
        packed_out, hidden = self.gru(packed)
        out, out_lengths = rnn_utils.pad_packed_sequence(packed_out, batch_first=True)
        mean = out.sum(1) / out_lengths.unsqueeze(1).float()
        last = torch.cat([hidden[-2], hidden[-1]], dim=1)
        return self.fc(torch.cat([mean, last], dim=1))


model = PackedClassifier(FEATURES, 8, 2)
with torch.no_grad():  # the same initial weights in both libraries
    for name, p in sorted(model.named_parameters(), key=lambda item: item[0]):
        p.copy_(torch.from_numpy(rng.uniform(-0.3, 0.3, size=tuple(p.shape)).astype(np.float32)))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
criterion = nn.CrossEntropyLoss()

losses = []
for epoch in range(EPOCHS):
    loader = DataLoader(samples, batch_size=8, sampler=rng.permutation(N).tolist(), collate_fn=collate)
    for padded, lengths, labels in loader:
        optimizer.zero_grad()
        loss = criterion(model(padded, lengths), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
