namespace DeltaMigrate.Engine.Tests;

public class SmokeTests
{
    [Fact]
    public void EngineAssemblyLoads() => Assert.Equal("DeltaMigrate.Engine", typeof(Engine.Placeholder).Assembly.GetName().Name);
}
