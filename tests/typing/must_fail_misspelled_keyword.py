"""
Must NOT type-check: misspelled factory keywords.

``.ci/typing.sh`` runs ``mypy --strict`` on this file and requires exit
status 1 with exactly the errors announced by the ``# E:`` comments, each on
the line after its comment (an error's text must start with the announced
one): the factories' signatures name every keyword, so a typo is caught
before run time.
"""

from tcpproto import EchoFactory, ThankYouFactory

# E: Unexpected keyword argument "idleTimout" for "EchoFactory"
EchoFactory(idleTimout=5)
# E: Unexpected keyword argument "onse" for "ThankYouFactory"
ThankYouFactory(b"thanks", onse=True)
