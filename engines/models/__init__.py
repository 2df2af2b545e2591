"""Network definitions (torch). Imported only for training and export, never by the runtime."""
