from course.staff.cli import main

raise SystemExit(main())
