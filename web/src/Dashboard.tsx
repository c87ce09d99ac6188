// The live monitoring view (dashboard.html): overview, live feed and recent results on one page.
import { useModels } from "./hooks";
import { Overview } from "./components/Overview";
import { JobFeed } from "./components/JobFeed";
import { RecentResults } from "./components/RecentResults";
import { appHref } from "./components/Bits";
import { Account } from "./components/SignIn";

export function Dashboard() {
  const { models } = useModels();
  return (
    <div className="app dashboard">
      <header className="top">
        <h1>Satlas · live monitoring</h1>
        <nav>
          <a href={appHref("")}>App</a>
        </nav>
        <Account />
      </header>
      <main className="grid">
        <Overview />
        <JobFeed models={models?.map((m) => m.name) ?? []} max={100} />
        <RecentResults models={models} />
      </main>
    </div>
  );
}
