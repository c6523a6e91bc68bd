"""stepml command-line interface."""
import click


@click.group()
def main() -> None:
    """stepml: train, deploy and serve an image classifier with AWS Step Functions."""
