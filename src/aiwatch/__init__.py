"""aiwatch: watch news feeds for themes, explain the matches, send a daily digest."""

__version__ = "0.1.0"
