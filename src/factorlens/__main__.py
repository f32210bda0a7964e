from factorlens.cli.main import main

raise SystemExit(main())
