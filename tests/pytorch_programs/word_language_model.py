import microgradnn as torch
# A small word-level language model trained as pytorch/examples' word_language_model does:
# an RNNModel (encoder, LSTM/GRU, decoder), batchify + get_batch, truncated BPTT with
# repackage_hidden, clip_grad_norm_ and the manual SGD step p.data.add_(p.grad, alpha=-lr).
# Only the import line above changes between microgradnn and PyTorch.
import numpy as np

nn = torch.nn
F = torch.nn.functional

RNN_TYPE = globals().get("RNN_TYPE", "LSTM")
NTOKENS, EMSIZE, NHID, NLAYERS = 10, 16, 24, 2
BPTT, BATCH_SIZE, LR, CLIP, EPOCHS = 12, 4, 5.0, 0.5, 3


class RNNModel(nn.Module):
    def __init__(self, rnn_type, ntoken, ninp, nhid, nlayers, dropout=0.0):
        super().__init__()
        self.ntoken = ntoken
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntoken, ninp)
        self.rnn = getattr(nn, rnn_type)(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntoken)
        self.rnn_type, self.nhid, self.nlayers = rnn_type, nhid, nlayers

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        output = self.drop(output)
        decoded = self.decoder(output)
        decoded = decoded.view(-1, self.ntoken)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, bsz):
        if self.rnn_type == "LSTM":
            return (torch.zeros(self.nlayers, bsz, self.nhid), torch.zeros(self.nlayers, bsz, self.nhid))
        return torch.zeros(self.nlayers, bsz, self.nhid)


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    data = data[: nbatch * bsz]
    return data.view(bsz, -1).t()


def get_batch(source, i):
    seq_len = min(BPTT, len(source) - 1 - i)
    data = source[i: i + seq_len]
    target = source[i + 1: i + 1 + seq_len].reshape(-1)
    return data, target


def repackage_hidden(h):
    if isinstance(h, torch.Tensor):
        return h.detach()
    return tuple(repackage_hidden(v) for v in h)


rng = np.random.default_rng(0)
# a corpus with structure to learn: a noisy walk over the vocabulary
steps = rng.choice([1, 2, 3], size=600, p=[0.6, 0.3, 0.1])
corpus = torch.from_numpy(np.cumsum(steps) % NTOKENS)
train_data = batchify(corpus, BATCH_SIZE)

model = RNNModel(RNN_TYPE, NTOKENS, EMSIZE, NHID, NLAYERS)
with torch.no_grad():  # the same initial weights in both libraries
    for name, p in sorted(model.named_parameters(), key=lambda item: item[0]):
        p.copy_(torch.from_numpy(rng.uniform(-0.1, 0.1, size=tuple(p.shape)).astype(np.float32)))
criterion = nn.NLLLoss()

losses = []
for epoch in range(EPOCHS):
    model.train()
    hidden = model.init_hidden(BATCH_SIZE)
    for batch, i in enumerate(range(0, train_data.size(0) - 1, BPTT)):
        data, targets = get_batch(train_data, i)
        model.zero_grad()
        hidden = repackage_hidden(hidden)
        output, hidden = model(data, hidden)
        loss = criterion(output, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-LR)
        losses.append(loss.item())
