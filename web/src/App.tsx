// The main app (index.html): hash routes for the views.
import { useHashRoute, useModels } from "./hooks";
import { Overview } from "./components/Overview";
import { JobFeed } from "./components/JobFeed";
import { RecentResults } from "./components/RecentResults";
import { JobDetail } from "./components/JobDetail";
import { Models } from "./components/Models";
import { Submit } from "./components/Submit";
import { appHref } from "./components/Bits";
import { Account } from "./components/SignIn";

const NAV = [
  ["/", "Overview"],
  ["/jobs", "Live jobs"],
  ["/results", "Results"],
  ["/models", "Models"],
  ["/submit", "Submit"],
] as const;

export function App() {
  const route = useHashRoute();
  const { models, error, reload } = useModels();
  const names = models?.map((m) => m.name) ?? [];
  const jobMatch = /^\/jobs\/(.+)$/.exec(route);
  let view;
  if (jobMatch) view = <JobDetail jobId={decodeURIComponent(jobMatch[1])} models={models} />;
  else if (route === "/jobs") view = <JobFeed models={names} />;
  else if (route === "/results") view = <RecentResults models={models} count={12} />;
  else if (route === "/models") view = <Models models={models} error={error} reload={reload} />;
  else if (route === "/submit") view = <Submit models={models} />;
  else
    view = (
      <>
        <Overview />
        <RecentResults models={models} />
      </>
    );
  return (
    <div className="app">
      <header className="top">
        <h1>Satlas</h1>
        <nav>
          {NAV.map(([path, label]) => (
            <a key={path} href={`#${path}`} className={route === path ? "active" : ""}>
              {label}
            </a>
          ))}
          <a href={appHref("", "./dashboard.html")}>Monitoring</a>
        </nav>
        <Account />
      </header>
      <main>{view}</main>
    </div>
  );
}
