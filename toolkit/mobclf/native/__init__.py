"""Native (C++) runtimes: the ExecuTorch runner that measures what a phone app pays."""
