from netdebug.cli import main

raise SystemExit(main())
