"""``nn.modules``: PyTorch's class paths (``torch.nn.modules.rnn.LSTM`` and friends) for code
that names them; every class is the very one :mod:`microgradnn.nn` exports."""

from . import activation, container, dropout, flatten, linear, loss, module, normalization, rnn, sparse
from .activation import *  # noqa: F401,F403
from .container import *  # noqa: F401,F403
from .dropout import *  # noqa: F401,F403
from .flatten import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .loss import *  # noqa: F401,F403
from .module import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .rnn import *  # noqa: F401,F403
from .sparse import *  # noqa: F401,F403
