from edgenas.cli import main

main()
