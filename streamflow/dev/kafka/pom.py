"""The Maven project that resolves Apache Kafka's broker jars (written into the jar cache, run by `ensure_jars`)."""

from __future__ import annotations

__all__ = ["POM"]

#: ``pom.xml``: nothing is built from it; ``mvn dependency:copy-dependencies`` copies the
#: runtime jars of the broker, the storage formatter and TopicCommand into one directory.
POM = """\
<?xml version="1.0" encoding="UTF-8"?>
<!--
  Resolves the jars of a real Apache Kafka broker (KRaft, broker+controller)
  for `streamflow dev kafka` and the test suite. Nothing is built from this
  pom: it only exists so that

    mvn -q -f <cache>/pom.xml dependency:copy-dependencies \\
        -DincludeScope=runtime -DoutputDirectory=<cache>/lib

  drops every jar needed to run `kafka.Kafka`, the storage formatter and
  `org.apache.kafka.tools.TopicCommand` into one directory that is then used
  as the JVM classpath (see streamflow/dev/kafka/jars.py, which drives this).

  The Kafka version can be overridden with -Dkafka.version=4.x.y (jars.py
  passes it explicitly so the cache directory name and the jars agree).
-->
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 https://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>

  <groupId>io.streamflow.tests</groupId>
  <artifactId>streamflow-test-kafka-broker</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <name>streamflow test Kafka broker classpath</name>

  <properties>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
    <kafka.version>4.1.2</kafka.version>
    <!-- Same logging stack as the Kafka 4.1 binary distribution (libs/). -->
    <slf4j.version>2.0.17</slf4j.version>
    <log4j.version>2.24.3</log4j.version>
  </properties>

  <dependencies>
    <!-- The broker itself: kafka.Kafka, the KRaft controller, storage, and
         kafka.tools.StorageTool (format). Its published pom pulls in
         kafka-server, kafka-storage, kafka-raft, kafka-metadata, the
         coordinators, scala-library, jackson, ... as runtime deps. -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>${kafka.version}</version>
    </dependency>
    <!-- Admin CLI classes: org.apache.kafka.tools.TopicCommand etc. -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>${kafka.version}</version>
      <exclusions>
        <!-- Kafka Connect (and its jetty/jersey/hk2 stack) is only needed by
             the connect-related tools, not by TopicCommand & co. -->
        <exclusion>
          <groupId>org.apache.kafka</groupId>
          <artifactId>connect-runtime</artifactId>
        </exclusion>
        <exclusion>
          <groupId>com.fasterxml.jackson.jakarta.rs</groupId>
          <artifactId>jackson-jakarta-rs-json-provider</artifactId>
        </exclusion>
      </exclusions>
    </dependency>

    <!-- Logging. kafka_2.13's pom names slf4j-api 1.7.36, which cannot bind
         to log4j2's slf4j2 provider; pin the 2.x API (nearest wins) plus the
         log4j2 binding and core that the Kafka 4 distribution ships. -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>${slf4j.version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-api</artifactId>
      <version>${log4j.version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>${log4j.version}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>${log4j.version}</version>
    </dependency>
  </dependencies>

  <build>
    <pluginManagement>
      <plugins>
        <plugin>
          <groupId>org.apache.maven.plugins</groupId>
          <artifactId>maven-dependency-plugin</artifactId>
          <version>3.8.1</version>
        </plugin>
      </plugins>
    </pluginManagement>
  </build>
</project>
"""
