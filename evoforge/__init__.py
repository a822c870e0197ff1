"""evoforge: research as a closed loop — learn, design, experiment, analyze — over a program and its evaluator."""

__version__ = "0.1.0"
