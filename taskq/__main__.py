from taskq.cli import main

raise SystemExit(main())
